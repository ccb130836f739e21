import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    // Both cores: the simulated fault seeds are split over two files so that they run side by side.
    maxWorkers: 2,
    hookTimeout: 60_000,
  },
});
