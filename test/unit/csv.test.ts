// The CSV reader: quoting, embedded separators and line breaks, CRLF, BOM, line numbers, malformed input.
import t from 'tap';
import { CsvSyntaxError, parseCsv } from '../../src/domain/csv.ts';

t.test(
  'fields, quotes, embedded commas, quotes and line breaks, with the line each record starts on',
  async (t) => {
    const text = '\ufeffa,b,c\r\n1,"x, y","he said ""hi"""\r\n2,"two\r\nlines",\n\n3,,"" \n';
    t.same(parseCsv(text.replace('"" \n', '""\n')), [
      { line: 1, fields: ['a', 'b', 'c'] },
      { line: 2, fields: ['1', 'x, y', 'he said "hi"'] },
      { line: 3, fields: ['2', 'two\r\nlines', ''] },
      { line: 6, fields: ['3', '', ''] },
    ]);
  },
);

t.test('no final newline, a lone quoted empty field, CR line ends', async (t) => {
  t.same(parseCsv('a,b\r1,2'), [
    { line: 1, fields: ['a', 'b'] },
    { line: 2, fields: ['1', '2'] },
  ]);
  t.same(parseCsv('""'), [{ line: 1, fields: [''] }]);
  t.same(parseCsv(''), []);
});

t.test('malformed quoting is an error naming the line', async (t) => {
  t.throws(() => parseCsv('a\n"open,field\n'), CsvSyntaxError);
  t.throws(() => parseCsv('a\nx"y\n'), { message: /line 2: a quote inside/ });
  t.throws(() => parseCsv('a\n"x"y\n'), { message: /line 2: text after a closing quote/ });
});
