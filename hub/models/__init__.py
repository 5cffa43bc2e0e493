"""Model definitions (issue 14): the one place a model's serving parameters live.

schema (the frozen values), checks / params / fields (the rules, every problem one line),
load (files and directories, hostile-input limits), chill (vLLM-Chill's VLLMModel), vllm and
llamacpp (the engine command lines), gguf (a GGUF header reader) and estimate (VRAM per GPU)
are pure: nothing there starts a process or opens a socket; disk reads sit behind
`estimate.Sizes`. catalog (what the Models service answers, run in the hub's worker lane),
convert (its protobuf) and service (the gRPC Models service) are the hub's edge.
"""
