/** Markdown tables and the BENCHMARKS.md sections that the bench parts rewrite. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** A Markdown table; columns whose header starts with '<' are left-aligned (the '<' is dropped). */
export function mdTable(header: string[], rows: (string | number)[][]): string {
  const left = header.map((h) => h.startsWith('<'));
  const head = header.map((h) => (h.startsWith('<') ? h.slice(1) : h));
  const cells = rows.map((r) => r.map(String));
  const width = head.map((h, i) => Math.max(3, h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => (left[i] ? c.padEnd(width[i]) : c.padStart(width[i]))).join(' | ')} |`;
  const rule = `| ${width.map((w, i) => (left[i] ? `${'-'.repeat(w)}` : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(head), rule, ...cells.map(line)].join('\n');
}

/**
 * Replaces what lies between `<!-- name:begin -->` and `<!-- name:end -->` in `file` with `body`; when
 * the markers are absent, appends `## heading`, `intro` and the marked section at the end.
 */
export function rewriteSection(
  file: string,
  name: string,
  body: string,
  heading: string,
  intro?: string,
): void {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  let md = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const marked = `${begin}\n${body.trim()}\n${end}`;
  const i = md.indexOf(begin);
  const j = md.indexOf(end);
  if (i >= 0 && j > i) md = md.slice(0, i) + marked + md.slice(j + end.length);
  else md = `${md.trimEnd()}\n\n## ${heading}\n\n${intro ? `${intro.trim()}\n\n` : ''}${marked}\n`;
  writeFileSync(file, md);
}
