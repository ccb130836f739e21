/** Things to undo however the bench ends (child processes, temp folders): run by bench/run.ts. */
const hooks = new Set<() => Promise<void> | void>();

/** Registers `fn`; call the returned function once it has been done the normal way. */
export function onCleanup(fn: () => Promise<void> | void): () => void {
  hooks.add(fn);
  return () => {
    hooks.delete(fn);
  };
}

export async function cleanupAll(): Promise<void> {
  const fns = [...hooks];
  hooks.clear();
  await Promise.allSettled(fns.map(async (f) => f()));
}
