/**
 * Duplicate keys in JSON text. JSON.parse keeps the last of two equal keys in one object and says nothing,
 * while other readers keep the first or refuse: a certificate or genesis file holding `"decision"` twice
 * would read one way here and another way in a verifier of another language (or to a person). Files that
 * are evidence are refused instead (cli/io.ts, the web page's paste box).
 */

/**
 * JSON text as read from a file, without the byte-order mark some editors put first (U+FEFF, as Notepad
 * saves UTF-8): RFC 8259 lets a reader ignore one, and JSON.parse refused the file with "Unexpected token
 * '﻿'", a character the message does not show. Only a leading one: anywhere else it is not whitespace.
 */
export function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * A JSON file's text parsed the one way Dropbear reads its files (CLI files, node configs, genesis files, key
 * files): past a leading byte-order mark (withoutBom), by JSON.parse (its SyntaxError thrown as is), with the
 * key it repeats, if any (duplicateJsonKey: such a file reads two ways). Each caller names its own error.
 */
export function parseJsonFile(text: string): { value: unknown; repeated: string | null } {
  const json = withoutBom(text);
  const value: unknown = JSON.parse(json);
  return { value, repeated: duplicateJsonKey(json) };
}

/**
 * Where `text` (JSON that JSON.parse accepts) repeats a key within one object: `"key" twice in <path>`,
 * or null. Keys are compared decoded (`"a"` and `"\u0061"` are one key).
 */
export function duplicateJsonKey(text: string): string | null {
  // One frame per open object or array: an object's keys so far and the path to it.
  const stack: { keys: Set<string> | null; path: string; next: string }[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      // A string right before a colon (whitespace aside) is a key.
      let j = end;
      while (j < n && (text[j] === ' ' || text[j] === '\t' || text[j] === '\n' || text[j] === '\r')) j++;
      if (top?.keys && text[j] === ':') {
        const key = JSON.parse(text.slice(i, end)) as string;
        if (top.keys.has(key)) return `${JSON.stringify(key)} twice in ${top.path || 'the top-level object'}`;
        top.keys.add(key);
        top.next = key;
      }
      i = end;
      continue;
    }
    if (c === '{' || c === '[') {
      const top = stack[stack.length - 1];
      const path = top ? (top.keys ? join(top.path, top.next) : `${top.path}[]`) : '';
      stack.push({ keys: c === '{' ? new Set() : null, path, next: '' });
    } else if (c === '}' || c === ']') stack.pop();
    i++;
  }
  return null;
}

/** The index just past the JSON string starting at `start` (its opening quote). */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\') i += 2;
    else if (c === '"') return i + 1;
    else i++;
  }
  return i;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * Which of Dropbear's files a JSON value looks like, by the fields only that file has at its top level; null
 * when none. For a hint beside a decoder's message: a certificate given as `--genesis` read only
 * `unknown field "outcome"`.
 */
export function jsonKind(v: unknown): string | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const has = (...keys: string[]) => keys.every((k) => Object.hasOwn(v, k));
  if (has('outcome', 'receipt', 'signatures')) return 'a certificate';
  if (has('policy', 'treasury', 'nodes')) return 'a group genesis';
  if (has('kind', 'publicKey', 'seed')) return 'a key file';
  if (has('groupId', 'genesis', 'client', 'nodes')) return "a group's group.json";
  if (has('id', 'genesis', 'key')) return 'a node config';
  return null;
}

/**
 * ` (the file looks like X, not WANTED)` when it looks like another of Dropbear's files; else ''. `what`
 * names what was given (the dashboard's: "text").
 */
export function kindHint(value: unknown, wanted: string, what = 'file'): string {
  const kind = jsonKind(value);
  return kind && kind !== wanted ? ` (the ${what} looks like ${kind}, not ${wanted})` : '';
}
