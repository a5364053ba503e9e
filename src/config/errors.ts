// One error type for everything a user can get wrong in a system's config files. The CLI prints
// `message` as is, so it always carries where (file:line), what (key) and what to do (hint).

export interface ErrorWhere {
  file: string;
  line: number;
  column?: number;
  /** Top-level key the problem belongs to (`disk`, `memory`, ...). */
  key?: string;
  /** Position inside a list value, 0-based; shown as `disk[1]`. */
  index?: number;
}

export class ConfigError extends Error {
  readonly file: string;
  readonly line: number;
  readonly column: number | undefined;
  readonly key: string | undefined;
  readonly index: number | undefined;
  /** What was wrong, without the location prefix. */
  readonly problem: string;
  /** What to do about it. */
  readonly hint: string | undefined;

  constructor(where: ErrorWhere, problem: string, hint?: string) {
    super(formatMessage(where, problem, hint));
    this.name = 'ConfigError';
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
    this.key = where.key;
    this.index = where.index;
    this.problem = problem;
    this.hint = hint;
  }
}

function formatMessage(w: ErrorWhere, problem: string, hint: string | undefined): string {
  // Key errors read best as file:line (the key says where on the line); syntax errors have no key,
  // so the column is what locates them.
  // line 0 = about the file (or directory) as a whole.
  let at = w.line > 0 ? `${w.file}:${w.line}` : w.file;
  if (w.line > 0 && w.key === undefined && w.column !== undefined) at += `:${w.column}`;
  const key = w.key === undefined ? '' : `key '${w.key}${w.index === undefined ? '' : `[${w.index}]`}': `;
  return `${at}: ${key}${problem}${hint ? `; ${hint}` : ''}`;
}

/** Shows a user-supplied value in a message without letting it flood or garble the terminal. */
export function quote(text: string, max = 40): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return JSON.stringify(cut);
}

/** Closest candidate within a small edit distance, for "did you mean" hints on typos. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > 64) return undefined;
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDist = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase());
    if (d <= bestDist && (best === undefined || d < bestDist)) {
      best = c;
      bestDist = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j];
      prev[j] = Math.min(above + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = above;
    }
  }
  return prev[b.length];
}

/** "unknown X; did you mean Y? (known: ...)" tail shared by every key/option check. */
export function unknownHint(word: string, known: readonly string[]): string {
  const guess = didYouMean(word, known);
  const list = `known: ${known.join(', ')}`;
  return guess ? `did you mean '${guess}'? (${list})` : list;
}
