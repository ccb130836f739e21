import type { Command } from 'commander';
import { loadGroup } from './group.ts';

export interface NodeStatus {
  id: number;
  api: string;
  healthy: boolean;
  ready: boolean;
  view: number | null;
  primary: number | null;
  lastExecuted: number | null;
  error?: string;
}

export async function groupStatus(dir: string): Promise<NodeStatus[]> {
  const g = loadGroup(dir);
  return Promise.all(
    g.file.nodes.map(async (n): Promise<NodeStatus> => {
      const base = {
        id: n.id,
        api: n.api,
        healthy: false,
        ready: false,
        view: null,
        primary: null,
        lastExecuted: null,
      };
      try {
        const health = await fetch(`${n.api}/healthz`, { signal: AbortSignal.timeout(3000) });
        const ready = await fetch(`${n.api}/readyz`, { signal: AbortSignal.timeout(3000) });
        const s = (await (
          await fetch(`${n.api}/v1/status`, { signal: AbortSignal.timeout(3000) })
        ).json()) as {
          view: number;
          primary: number;
          lastExecuted: number;
        };
        return {
          ...base,
          healthy: health.status === 200,
          ready: ready.status === 200,
          view: s.view,
          primary: s.primary,
          lastExecuted: s.lastExecuted,
        };
      } catch (e) {
        return { ...base, error: (e as Error).message };
      }
    }),
  );
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("each node's health, view, primary and last executed sequence number")
    .requiredOption('--group <dir>', 'the group folder')
    .option('--json', 'print a JSON array (id, api, healthy, ready, view, primary, lastExecuted)')
    .addHelpText('after', '\nExample:\n  npx dropbear status --group out/group --json\n')
    .action(async (o: { group: string; json?: boolean }) => {
      const rows = await groupStatus(o.group);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      } else {
        const show = (x: number | null) => (x === null ? '-' : String(x));
        process.stdout.write('node  api                         healthy  ready  view  primary  executed\n');
        for (const r of rows)
          process.stdout.write(
            `${String(r.id).padEnd(6)}${r.api.padEnd(28)}${(r.healthy ? 'yes' : 'NO').padEnd(9)}${(r.ready ? 'yes' : 'no').padEnd(7)}${show(r.view).padEnd(6)}${show(r.primary).padEnd(9)}${show(r.lastExecuted)}${r.error ? `  (${r.error})` : ''}\n`,
          );
      }
      if (rows.some((r) => !r.healthy)) process.exitCode = 1;
    });
}
