"""llama-cpp-python environments on this node (issue 15): one venv per backend and version
under STATE_DIR/envs/<backend>-<version>/, built by a task (agent/tasks/build_env.py) through
preflight, venv, fetch, cache-or-compile, install, upload and a verification gate, and used by
host process projects (llama.cpp model servers).

  record.py    the environment as plain data (EnvRecord), its states and names
  store.py     the directory of environments: env.json, build.log, recovery, removal, use
  flags.py     CMake flags, GPU targets, toolkit versions and ninja progress: pure functions
  preflight.py what a backend needs on this host, each missing thing one line naming its fix
  commands.py  subprocesses in their own process group, every output line to the build log
  tinygguf.py  a tiny llama GGUF written without numpy or gguf, for the verification gate
  verify.py    the verification gate: a subprocess of the new environment loads the model
  wheels.py    the client of the hub's wheel cache (WheelCache gRPC service)
  build.py     the build: the phases, in order, with progress
"""
