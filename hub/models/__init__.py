"""Model definitions (issue 14): the one place a model's serving parameters live.

schema (the frozen values), checks / params / fields (the rules, every problem one line),
load (files and directories, hostile-input limits), chill (vLLM-Chill's VLLMModel), vllm and
llamacpp (the engine command lines), gguf (a GGUF header reader) and estimate (VRAM per GPU).
Pure: nothing here starts a process or opens a socket; disk reads sit behind `estimate.Sizes`.
"""
