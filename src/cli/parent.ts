/**
 * For a process started with an IPC channel (`group start`'s nodes, the benches' servers): its end when the
 * process that started it ends, even killed outright. Listened for at once, so a parent that ends while this
 * one starts up is not missed.
 *
 * Returns `whenGone(stop)`: from then on the parent's end calls `stop`, at once if it has ended already.
 * Before that, `early` is called (default: nothing; the end is remembered for `whenGone`). A process started
 * without a channel (from a shell) never calls either.
 */
export function watchParent(early?: () => void): (stop: () => void) => void {
  // `process.send` exists whenever a channel was given, even one already closed: a parent that ended before
  // this ran closed it during start-up, and `process.connected` says so.
  if (typeof process.send !== 'function') return () => {};
  let gone = false;
  let onGone: (() => void) | undefined = early;
  process.channel?.unref();
  process.on('disconnect', () => {
    gone = true;
    onGone?.();
  });
  if (!process.connected) {
    gone = true;
    early?.();
  }
  return (stop) => {
    onGone = stop;
    if (gone || !process.connected) stop();
  };
}
