/**
 * Turns off onnxruntime's telemetry for this process, unless the environment already says otherwise.
 *
 * onnxruntime-node 1.30 on Linux ships Microsoft's telemetry client: every process that loads it writes
 * an event cache to ~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db (one SQLite file
 * shared by all processes: a group's nodes contend on it, "database is locked" in the log), a
 * /tmp/mat-debug-<pid>.log (both seen here), and by onnxruntime's own account of the feature uploads
 * session and model events (not seen here: this machine reaches no such host). A node's model metadata
 * is its owner's business, and a node must not depend on reaching a third party. `ORT_DISABLE_TELEMETRY=1`
 * is onnxruntime's opt-out; it is read once, when the runtime initialises, from the process environment.
 * A worker thread cannot set it (its `process.env` is a copy), so this module is imported on the main
 * thread by every module that loads onnxruntime there or starts the workers that do.
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';
