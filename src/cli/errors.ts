import { Command, type HelpContext, type Option } from 'commander';
import { DropbearError, printableLine } from '../protocol/index.ts';

/**
 * The CLI's one place that turns an error into a message and an exit status. The message is one printable
 * line: a parser quotes the text it failed on, line breaks included (`Unexpected token 'h', "hello\nworld" is
 * not valid JSON`), and onnxruntime ends its messages with one; such an error came out over several lines,
 * the later ones without the code (and a supervisor reading `error [CODE]:` lines saw a part). A terminal's
 * escapes in it (a file name, a node's words) are spaces too.
 */
export function reportAndExit(e: unknown): never {
  if (e instanceof DropbearError) {
    process.stderr.write(`error [${e.code}]: ${printableLine(e.message)}\n`);
    process.exit(2);
  }
  process.stderr.write(`error: ${printableLine(e instanceof Error ? e.message : String(e))}\n`);
  process.exit(2);
}

export function usageError(message: string): DropbearError {
  return new DropbearError('CLI_USAGE', message);
}

/**
 * The program and every command under it: commander's own refusals (a missing argument or option value, an
 * unknown option or command, a missing required option) are CLI_USAGE on one line, exit 2, as every other
 * usage error. They exited 1 with no code and the hint on a second line: 1 is `verify`'s "some certificates
 * are invalid" and `ledger verify`'s "problems found", so `verify --genesis g.json` with no certificate read
 * as a failed verification. A command with subcommands run without one (`dropbear ledger`) prints its help
 * to stderr, then a CLI_USAGE line naming its subcommands, and exits 2 too; `--help` and `help` still exit 0.
 */
export class DropbearCommand extends Command {
  constructor(name?: string) {
    super(name);
    this.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
    // An empty value (`--out "$UNSET"`) was taken as no option (`sim --out ""` wrote nothing, status 0) or
    // as the current folder (`group init --dir ""` made a group there): no option or argument takes one.
    this.hook('preAction', (self, action) => {
      if (self !== action) return;
      this.repeatCheck();
      emptyValueCheck(action);
    });
  }

  /** How often each option that takes one value was given on the command line. */
  private readonly given = new Map<string, number>();

  // The last of two values was taken without a word (`verify --genesis a.json --genesis b.json` checked
  // against b alone): an option that takes one value may be given once. Repeatable ones (a list default,
  // like sim --byzantine) and switches are not counted.
  override addOption(option: Option): this {
    super.addOption(option);
    if (!option.isBoolean() && !option.variadic && !Array.isArray(option.defaultValue)) {
      const name = option.long ?? option.flags;
      this.on(`option:${option.name()}`, () => this.given.set(name, (this.given.get(name) ?? 0) + 1));
    }
    return this;
  }

  /** The command's words from the program down (`dropbear ledger verify`). */
  private path(): string[] {
    const path: string[] = [];
    for (let c: Command | null = this; c; c = c.parent) path.unshift(c.name());
    return path;
  }

  /** CLI_USAGE for an option that takes one value given more than once. */
  repeatCheck(): void {
    for (const [name, count] of this.given)
      if (count > 1) throw usageError(`${name} is given ${count} times; give it once`);
  }

  // A command with subcommands run without one (`dropbear ledger`): commander prints the help to stderr
  // and exits without saying what was wrong. The help stays; a usage line like every other refusal's
  // follows it.
  override help(context?: HelpContext | ((text: string) => string)): never {
    if (typeof context === 'function') return super.help(context);
    if (!context?.error) return super.help(context);
    this.outputHelp({ error: true });
    const subs = this.commands.map((c) => c.name()).filter((n) => n !== 'help');
    const path = this.path().join(' ');
    process.stderr.write(
      `error [CLI_USAGE]: \`${path}\` needs a command (${subs.join(', ')}); run \`${path} --help\` for usage\n`,
    );
    process.exit(2);
  }

  override createCommand(name?: string): Command {
    return new DropbearCommand(name);
  }

  override error(message: string): never {
    const path = this.path();
    // One line: commander puts a suggestion ("(Did you mean --nodes?)") on a line of its own.
    const what = message
      .replace(/^error: /, '')
      .trim()
      .replace(/\s*\n\s*/g, ' ')
      .replace(/\.$/, '');
    process.stderr.write(`error [CLI_USAGE]: ${what}; run \`${path.join(' ')} --help\` for usage\n`);
    process.exit(2);
  }
}

/** CLI_USAGE for the first option or argument given on the command line as empty (or blanks). */
function emptyValueCheck(c: Command): void {
  const empty = (v: unknown) =>
    (typeof v === 'string' && v.trim() === '') ||
    (Array.isArray(v) && v.some((x) => typeof x === 'string' && x.trim() === ''));
  for (const o of c.options) {
    const key = o.attributeName();
    if (c.getOptionValueSource(key) === 'cli' && empty(c.getOptionValue(key)))
      throw usageError(`${o.long ?? o.flags} must not be empty; give a value, or leave the option out`);
  }
  c.registeredArguments.forEach((a, i) => {
    if (empty(c.processedArgs[i]))
      throw usageError(`<${a.name()}${a.variadic ? '...' : ''}> must not be empty`);
  });
}
