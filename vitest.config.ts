import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The slowest files (seconds in CI, 2026-12-07 at f075084: faults-2 174, faults-1 106, faults-sizes 102,
 * pipeline 73, crash 68, …), started first, longest first. Without a cache of earlier runs (a clean clone in
 * CI) vitest starts the largest files first, and the three slowest are among the smallest (the simulator's
 * seed lists): they ran last, side by side, after everything else, so the run waited ~1 minute on them.
 */
const SLOWEST_FIRST = [
  'test/sim/faults-2.test.ts',
  'test/sim/faults-1.test.ts',
  'test/sim/faults-sizes.test.ts',
  'test/inference/pipeline.test.ts',
  'test/sim/crash.test.ts',
  'test/sim/log-prune-old-file.test.ts',
  'test/sim/log-prune-equiv.test.ts',
  'test/cli/group-supervise.test.ts',
  'test/sim/expired.test.ts',
  'test/sim/byzantine.test.ts',
  'test/e2e/dashboard.test.ts',
  'test/sim/faults-clock.test.ts',
];

class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = SLOWEST_FIRST.indexOf(relative(f.project.config.root, f.moduleId));
      return i < 0 ? SLOWEST_FIRST.length : i;
    };
    // A stable sort: the rest keep vitest's order.
    return sorted
      .map((f, i) => ({ f, i, r: rank(f) }))
      .sort((a, b) => a.r - b.r || a.i - b.i)
      .map((x) => x.f);
  }
}

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
    sequence: { sequencer: SlowestFirst },
    // The default output, then the files that did not pass by name (a file whose process died is otherwise
    // reported without its name: test/support/unfinished-reporter.ts).
    reporters: ['default', './test/support/unfinished-reporter.ts'],
  },
});
