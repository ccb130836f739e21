import { reportAndExit } from './errors.ts';
import { buildProgram } from './program.ts';

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  reportAndExit(e);
}
