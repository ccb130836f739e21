/**
 * Names, after the summary, each test file that did not pass and the tests in it that did not pass or never
 * ran. When a file's process dies (a native crash, a signal), Vitest reports only "Worker exited
 * unexpectedly", without the file; CI keeps just the end of the output, so the name goes last.
 */
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

export default class UnfinishedReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const lines: string[] = [];
    for (const m of modules) {
      const state = m.state();
      if (state === 'passed' || state === 'skipped') continue;
      const tests = [...m.children.allTests()];
      const notPassed = tests.filter((t) => t.result().state !== 'passed' && t.result().state !== 'skipped');
      lines.push(
        `  ${relative(process.cwd(), m.moduleId)}: ${state}; ${notPassed.length} of ${tests.length} tests did not pass` +
          notPassed.map((t) => `\n    - ${t.fullName} (${t.result().state})`).join(''),
      );
    }
    if (lines.length > 0) process.stdout.write(`\nTest files that did not pass:\n${lines.join('\n')}\n`);
  }
}
