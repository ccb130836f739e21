/**
 * A dependency-free SVG line plot (latency against throughput), readable on GitHub: one polyline with
 * markers per series, linear x, linear or log y, grid, axis labels, legend and a caption line (machine,
 * command, runs).
 */

export interface Series {
  name: string;
  points: { x: number; y: number }[];
  /** Dashed line (e.g. a baseline). */
  dashed?: boolean;
  /** CSS colour (default: the next of a fixed palette). */
  color?: string;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logY?: boolean;
  /** Lines under the plot (machine, command, runs). */
  caption?: string[];
  width?: number;
  height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k). */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo / 1.0001 && v <= hi * 1.0001) out.push(Number(v.toPrecision(12)));
    }
  return out;
}

function label(v: number): string {
  if (v >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  if (v >= 1000) return `${(v / 1000).toFixed(v % 1000 === 0 ? 0 : 1)}k`;
  if (v < 1) return v.toPrecision(2);
  return String(Number(v.toPrecision(6)));
}

export function linePlot(o: PlotOptions): string {
  const W = o.width ?? 720;
  const H = (o.height ?? 420) + 14 * (o.caption?.length ?? 0);
  const caption = o.caption ?? [];
  const m = { left: 70, right: 190, top: 40, bottom: 60 + 14 * caption.length };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const pts = o.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y).filter((y) => !o.logY || y > 0);
  const xTicks = niceTicks(0, Math.max(1, ...xs));
  const x0 = xTicks[0];
  const x1 = xTicks[xTicks.length - 1];
  let yTicks: number[];
  let yMap: (y: number) => number;
  if (o.logY) {
    const lo = 10 ** Math.floor(Math.log10(Math.max(1e-3, Math.min(...ys, 1))));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...ys, lo * 10)));
    yTicks = logTicks(lo, hi);
    yMap = (y) =>
      m.top + ph - ((Math.log10(Math.max(y, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
  } else {
    yTicks = niceTicks(0, Math.max(1, ...ys));
    const top = yTicks[yTicks.length - 1];
    yMap = (y) => m.top + ph - (y / top) * ph;
  }
  const xMap = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const el: string[] = [];
  el.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
  );
  for (const t of xTicks) {
    const x = xMap(t);
    el.push(
      `<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#e5e5e5"/>`,
      `<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle">${label(t)}</text>`,
    );
  }
  for (const t of yTicks) {
    const y = yMap(t);
    el.push(
      `<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 6}" y="${y + 4}" text-anchor="end">${label(t)}</text>`,
    );
  }
  el.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`,
    `<text x="${m.left + pw / 2}" y="${m.top + ph + 36}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${o.logY ? ' (log scale)' : ''}</text>`,
  );
  o.series.forEach((s, i) => {
    const c = s.color ?? COLORS[i % COLORS.length];
    // In the order given (offered load): a curve that bends back at saturation shows it.
    const p = s.points.filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y) && (!o.logY || q.y > 0));
    if (p.length > 0) {
      const d = p.map((q) => `${xMap(q.x).toFixed(1)},${yMap(q.y).toFixed(1)}`).join(' ');
      el.push(
        `<polyline points="${d}" fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      );
      for (const q of p)
        el.push(`<circle cx="${xMap(q.x).toFixed(1)}" cy="${yMap(q.y).toFixed(1)}" r="3" fill="${c}"/>`);
    }
    const ly = m.top + 10 + i * 20;
    const lx = m.left + pw + 14;
    el.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${lx + 28}" y="${ly + 4}">${esc(s.name)}</text>`,
    );
  });
  caption.forEach((line, i) => {
    el.push(
      `<text x="10" y="${H - 10 - 14 * (caption.length - 1 - i)}" font-size="10" fill="#555">${esc(line)}</text>`,
    );
  });
  el.push('</svg>');
  return `${el.join('\n')}\n`;
}
