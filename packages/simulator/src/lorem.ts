// The completion text: one word per token, cycling through a fixed list. Multibyte words
// (2-, 3- and 4-byte UTF-8 sequences) are spread through it so that a stream reader which
// decodes each network read separately, instead of as a stream, visibly corrupts the text.
const WORDS: readonly string[] = [
  'Lorem', 'ipsum', 'héllo', 'dolor', 'naïve', 'sit', '日本', 'amet', '🙂', 'consectetur',
  'adipiscing', 'élit', 'sed', 'do', 'eiusmod', 'tempor', '中文', 'incididunt', 'ut', 'labore',
  'et', 'dolore', 'magna', 'façade', 'aliqua', '✓',
];

/** The text of token `index` (0-based): words are separated by a leading space. */
export function tokenText(index: number): string {
  const word = WORDS[index % WORDS.length] ?? '';
  return index === 0 ? word : ` ${word}`;
}

/** The text of the first `count` tokens, as a client would reassemble it. */
export function completionText(count: number): string {
  let text = '';
  for (let index = 0; index < count; index += 1) text += tokenText(index);
  return text;
}
