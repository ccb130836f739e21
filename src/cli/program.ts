import { packageVersion } from '../inference/kserve-server.ts';
import { registerDemo } from './demo.ts';
import { registerDeposit } from './deposit.ts';
import { DropbearCommand } from './errors.ts';
import { registerEval } from './eval.ts';
import { registerGroup } from './group.ts';
import { registerInfer } from './infer.ts';
import { registerApiKey, registerKeygen } from './keygen.ts';
import { registerLedger } from './ledger.ts';
import { registerModelUpdate } from './model-update.ts';
import { registerModels } from './models.ts';
import { registerNode } from './node.ts';
import { registerOwners } from './owners.ts';
import { registerRefund } from './refund.ts';
import { registerServeModel } from './serve-model.ts';
import { registerSetFee } from './set-fee.ts';
import { registerSim } from './sim.ts';
import { registerStatus } from './status.ts';
import { registerTransfer } from './transfer.ts';
import { registerTx } from './tx.ts';
import { registerVerify } from './verify.ts';
import { registerVerifyPage } from './verify-page.ts';
import { registerWithdraw } from './withdraw.ts';

/**
 * The `dropbear` program with every command registered: the one list, used by the binary (main.ts) and by
 * the tests that run the CLI in their own process (test/cli/run-cli.ts's runCliInProcess). A fresh program
 * each call: commander keeps the parsed options on the commands.
 */
export function buildProgram(): DropbearCommand {
  const program = new DropbearCommand();
  program
    .name('dropbear')
    .description('BFT-certified ML inference: a group of model owners agrees on every answer')
    // The package's version (package.json), as the nodes report it (GET /v2): `dropbear --version` was an
    // unknown option, exit 2.
    .version(packageVersion(), '-V, --version', 'print the version and exit');
  registerSim(program);
  registerVerify(program);
  registerVerifyPage(program);
  registerDemo(program);
  registerLedger(program);
  registerModels(program);
  registerEval(program);
  registerKeygen(program);
  registerApiKey(program);
  registerOwners(registerGroup(program));
  registerNode(program);
  registerInfer(program);
  registerStatus(program);
  registerModelUpdate(program);
  registerDeposit(program);
  registerSetFee(program);
  registerWithdraw(program);
  registerRefund(program);
  registerTransfer(program);
  registerTx(program);
  registerServeModel(program);
  return program;
}
