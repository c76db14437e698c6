/** kubectl-style table output as rows of cells (columns are separated by two or more spaces). */
export function tableRows(text: string): string[][] {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => line.trim().split(/\s{2,}/));
}

/** The first column of each data row (the header row skipped). */
export function firstColumn(text: string): Array<string | undefined> {
  return tableRows(text)
    .slice(1)
    .map((row) => row[0]);
}
