import { registerDemo } from './demo.ts';
import { DropbearCommand, reportAndExit } from './errors.ts';
import { registerEval } from './eval.ts';
import { registerGroup } from './group.ts';
import { registerInfer } from './infer.ts';
import { registerApiKey, registerKeygen } from './keygen.ts';
import { registerLedger } from './ledger.ts';
import { registerModelUpdate } from './model-update.ts';
import { registerModels } from './models.ts';
import { registerNode } from './node.ts';
import { registerServeModel } from './serve-model.ts';
import { registerSim } from './sim.ts';
import { registerStatus } from './status.ts';
import { registerVerify } from './verify.ts';
import { registerVerifyPage } from './verify-page.ts';

const program = new DropbearCommand();
program
  .name('dropbear')
  .description('BFT-certified ML inference: a group of model owners agrees on every answer');
registerSim(program);
registerVerify(program);
registerVerifyPage(program);
registerDemo(program);
registerLedger(program);
registerModels(program);
registerEval(program);
registerKeygen(program);
registerApiKey(program);
registerGroup(program);
registerNode(program);
registerInfer(program);
registerStatus(program);
registerModelUpdate(program);
registerServeModel(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  reportAndExit(e);
}
