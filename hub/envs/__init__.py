"""llama-cpp-python environments as the hub sees them (issue 15): what each node reported
(`view`), the build operation kind (`kind`), the cluster's wheel cache (`wheels`) and the Envs
gRPC service (`service`)."""
