import type { Command } from 'commander';
import { verifyCertificate } from '../certificate/index.ts';
import { hex } from '../protocol/index.ts';
import { runSimCommand } from './sim.ts';

/**
 * Until real node processes exist (issue 5), the demo runs a simulated 4-node group with one lying node
 * and prints what each node voted and what the group certified.
 */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run a simulated 4-node group (node 3 lies) and print certified results')
    .option('--requests <r>', 'requests to send', '12')
    .option('--out <dir>', 'where to write genesis and certificates', 'out/demo')
    .addHelpText('after', '\nExample:\n  npm run demo -- --requests 20\n')
    .action((o: { requests: string; out: string }) => {
      const { result, summary, ok } = runSimCommand({
        nodes: '4',
        requests: o.requests,
        seed: '2026',
        out: o.out,
        byzantine: ['3:wrong-results'],
        disagreement: '0.2',
        delay: '1',
        jitter: '0.5',
        loss: '0',
        duplicate: '0',
      });
      const rows = [['request', 'node0', 'node1', 'node2', 'node3*', 'certified decision', 'verified']];
      for (const c of result.certificates.values()) {
        const byNode = new Map(
          c.outcome.votes.map((v) => [
            v.node,
            v.result.kind === 'class' ? String(v.result.top[0]?.label) : '?',
          ]),
        );
        const d = c.outcome.decision;
        rows.push([
          hex(c.outcome.requestId).slice(0, 12),
          ...[0, 1, 2, 3].map((i) => byNode.get(i) ?? '-'),
          d.kind === 'label' ? `label ${d.label}` : d.kind,
          verifyCertificate(c, result.group.genesis).ok ? 'yes' : 'NO',
        ]);
      }
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i])).join('  ')}\n`);
      process.stdout.write(
        `\n* node 3 is Byzantine (answers wrong labels); the decision follows the honest plurality.\n`,
      );
      process.stdout.write(`${summary}\n`);
      process.stdout.write(
        `certificates: ${o.out}/certificates  check them: npx dropbear verify --genesis ${o.out}/genesis.json ${o.out}/certificates\n`,
      );
      if (!ok) process.exitCode = 1;
    });
}
