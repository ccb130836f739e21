/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for tests of GET /metrics: it throws on
 * anything a scraper could read differently, and on numbers an operator should never see. Checked: every
 * sample belongs to a family declared by `# TYPE` before it (one HELP, one TYPE, samples together); names
 * and label names are valid, label values use only the escapes \\ \" \n; no sample is repeated; a counter's
 * name ends in `_total`; no value is NaN or infinite (but a bucket's `le`); counters and histogram sums are
 * not negative; each histogram series has ascending buckets ending in `+Inf`, cumulative counts, and a
 * `_count` equal to its `+Inf` bucket.
 */

export type Labels = Record<string, string>;
export interface Sample {
  name: string;
  labels: Labels;
  value: number;
}
export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s: string, line: string): number {
  if (s === '+Inf' || s === 'Inf') return Number.POSITIVE_INFINITY;
  if (s === '-Inf') return Number.NEGATIVE_INFINITY;
  if (s === 'NaN') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad value "${s}" in: ${line}`);
  return Number(s);
}

function parseLabels(s: string, line: string): { labels: Labels; rest: string } {
  const labels: Labels = {};
  let i = 0;
  for (;;) {
    while (s[i] === ' ') i++;
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) };
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = s.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new Error(`bad label name "${name}" in: ${line}`);
    if (name in labels) throw new Error(`label ${name} twice in: ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let v = '';
    let j = eq + 2;
    for (; ; j++) {
      const c = s[j];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === '"') break;
      if (c === '\n') throw new Error(`raw newline in label value: ${line}`);
      if (c === '\\') {
        const e = s[++j];
        if (e === '\\') v += '\\';
        else if (e === '"') v += '"';
        else if (e === 'n') v += '\n';
        else throw new Error(`bad escape \\${e} in: ${line}`);
      } else v += c;
    }
    labels[name] = v;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (s[i] !== '}') throw new Error(`expected , or } in: ${line}`);
  }
}

function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  const f = families.get(sample);
  if (f) return f;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.endsWith(suffix)) continue;
    const h = families.get(sample.slice(0, -suffix.length));
    if (h && (h.type === 'histogram' || (h.type === 'summary' && suffix !== '_bucket'))) return h;
  }
  return undefined;
}

export function parsePromText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | null = null;
  const closed = new Set<string>();
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the text does not end with a newline');
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      let f = families.get(name);
      if (f && closed.has(name)) throw new Error(`family ${name} declared again after its samples: ${line}`);
      if (!f) {
        if (current && current.name !== name) closed.add(current.name);
        f = { name, help: '', type: 'untyped', samples: [] };
        families.set(name, f);
        (f as Family & { declared: Set<string> }).declared = new Set();
      }
      const declared = (f as Family & { declared: Set<string> }).declared;
      if (declared.has(kind)) throw new Error(`second ${kind} for ${name}`);
      if (f.samples.length > 0) throw new Error(`${kind} for ${name} after its samples`);
      declared.add(kind);
      if (kind === 'HELP') {
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`bad escape in HELP: ${line}`);
        f.help = rest;
      } else {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest))
          throw new Error(`bad TYPE in: ${line}`);
        f.type = rest as Family['type'];
      }
      current = f;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{)?(.*)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, brace, after] = m;
    let labels: Labels = {};
    let rest = after;
    if (brace) ({ labels, rest } = parseLabels(after, line));
    const parts = rest.trim().split(/ +/);
    if (parts.length < 1 || parts.length > 2 || !rest.startsWith(' '))
      throw new Error(`bad value part in: ${line}`);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`bad timestamp in: ${line}`);
    const value = parseValue(parts[0], line);
    const f = familyOf(name, families);
    if (!f || !(f as Family & { declared: Set<string> }).declared.has('TYPE'))
      throw new Error(`sample without a TYPE line before it: ${line}`);
    if (current !== f) throw new Error(`samples of ${f.name} are not together: ${line}`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`sample repeated: ${line}`);
    seen.add(key);
    if (!(name.endsWith('_bucket') && f.type === 'histogram') && !Number.isFinite(value))
      throw new Error(`not a finite number: ${line}`);
    f.samples.push({ name, labels, value });
  }
  for (const f of families.values()) {
    if (!(f as Family & { declared: Set<string> }).declared.has('HELP'))
      throw new Error(`${f.name} has no HELP`);
    if (f.type === 'counter') {
      if (!f.name.endsWith('_total')) throw new Error(`counter ${f.name} does not end in _total`);
      for (const s of f.samples) if (s.value < 0) throw new Error(`counter ${f.name} is negative`);
    }
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let e = series.get(key);
    if (!e) series.set(key, (e = { buckets: [] }));
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name} bucket without le`);
      e.buckets.push([parseValue(le, le), s.value]);
    } else if (s.name === `${f.name}_sum`) e.sum = s.value;
    else if (s.name === `${f.name}_count`) e.count = s.value;
    else throw new Error(`${s.name} in histogram ${f.name}`);
  }
  for (const [key, e] of series) {
    const where = `${f.name}${key}`;
    if (e.sum === undefined || e.count === undefined) throw new Error(`${where}: no _sum or _count`);
    if (e.sum < 0) throw new Error(`${where}: negative sum ${e.sum}`);
    const b = e.buckets;
    if (b.length === 0 || b[b.length - 1][0] !== Number.POSITIVE_INFINITY)
      throw new Error(`${where}: no +Inf bucket`);
    for (let i = 1; i < b.length; i++) {
      if (!(b[i][0] > b[i - 1][0])) throw new Error(`${where}: buckets not ascending`);
      if (b[i][1] < b[i - 1][1]) throw new Error(`${where}: bucket counts not cumulative`);
    }
    if (b[b.length - 1][1] !== e.count) throw new Error(`${where}: _count ${e.count} ≠ +Inf bucket`);
  }
}

/** The value of sample `name` with exactly `labels` (undefined when there is none). */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Labels = {},
): number | undefined {
  const f = familyOf(name, families);
  const want = JSON.stringify(Object.entries(labels).sort());
  return f?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)
    ?.value;
}

/** Every sample of `name`, whatever its labels. */
export function samplesOf(families: Map<string, Family>, name: string): Sample[] {
  return familyOf(name, families)?.samples.filter((s) => s.name === name) ?? [];
}
