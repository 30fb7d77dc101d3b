// ESLint rule: `.catch(() => undefined)` (or `() => {}`, `() => null`, `() => void 0`) drops an
// error on purpose; the reader must be told why. Allowed only with a comment inside the call,
// on the line(s) directly before its statement, or at the end of its last line.

/** @param {import('estree').Node | null | undefined} body */
function ignoresError(body) {
  if (body == null) return false;
  if (body.type === 'BlockStatement') return body.body.length === 0;
  if (body.type === 'Identifier') return body.name === 'undefined';
  if (body.type === 'Literal') return body.value === null;
  return body.type === 'UnaryExpression' && body.operator === 'void';
}

/** @param {any} node */
function enclosingStatement(node) {
  let current = node;
  while (current.parent && !/Statement$|Declaration$/.test(current.type)) current = current.parent;
  return current;
}

/** @type {import('eslint').Rule.RuleModule} */
export const explainedIgnore = {
  meta: {
    type: 'problem',
    docs: { description: 'an ignored rejection needs a comment saying why the error may go' },
    schema: [],
    messages: { unexplained: 'this .catch() drops the error: say in a comment why that is safe, or handle it' },
  },
  create(context) {
    const source = context.sourceCode;
    return {
      /** @param {any} node */
      CallExpression(node) {
        const callee = node.callee;
        if (callee.type !== 'MemberExpression' || callee.property.type !== 'Identifier' || callee.property.name !== 'catch') return;
        const handler = node.arguments[0];
        if (handler === undefined || !/FunctionExpression$/.test(handler.type) || !ignoresError(handler.body)) return;
        const statement = enclosingStatement(node);
        const before = source.getCommentsBefore(statement).some((c) => c.loc.end.line >= statement.loc.start.line - 1);
        const inside = source.getCommentsInside(statement).length > 0;
        const trailing = source.getCommentsAfter(statement).some((c) => c.loc.start.line === statement.loc.end.line);
        if (!before && !inside && !trailing) context.report({ node, messageId: 'unexplained' });
      },
    };
  },
};
