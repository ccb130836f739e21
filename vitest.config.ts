import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // A guard against a hang, not a speed check (speed is measured by `npm run bench`). CI machines
    // stall: on one CI run a simulator test that takes 0.8 s here took over 120 s, and another 223 s
    // against ~10, while the rest of the suite ran at its usual pace. A synchronous test (the simulator
    // bounds its runs in virtual time) cannot be interrupted anyway; the limit only fails it afterwards.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Both cores: the simulated fault seeds are split over two files so that they run side by side.
    maxWorkers: 2,
    // The default output, then the files that did not pass by name (a file whose process died is otherwise
    // reported without its name: test/support/unfinished-reporter.ts).
    reporters: ['default', './test/support/unfinished-reporter.ts'],
  },
});
