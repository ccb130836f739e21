import { Command } from 'commander';
import { registerDemo } from './demo.ts';
import { reportAndExit } from './errors.ts';
import { registerEval } from './eval.ts';
import { registerLedger } from './ledger.ts';
import { registerModels } from './models.ts';
import { registerServeModel } from './serve-model.ts';
import { registerSim } from './sim.ts';
import { registerVerify } from './verify.ts';

const program = new Command();
program
  .name('dropbear')
  .description('BFT-certified ML inference: a group of model owners agrees on every answer')
  .showHelpAfterError('(run with --help for usage)');
registerSim(program);
registerVerify(program);
registerDemo(program);
registerLedger(program);
registerModels(program);
registerEval(program);
registerServeModel(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  reportAndExit(e);
}
