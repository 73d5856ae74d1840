//! Bounds on a request's shape, checked before anything recurses over it or allocates in
//! proportion to it.
//!
//! async-graphql's parser (pest) recurses once per nested `{`, `[` or `(`, so a few kilobytes
//! of `[[[[…` overflow a worker's stack before any limit of its own runs; its recursion-depth
//! check, its validation rules and its executor all expand fragment spreads, so fragments
//! that each spread the next several times cost exponential time and memory before the
//! complexity limit (computed on the expanded document) can refuse them. Hence, in order:
//!
//! 1. [`prescan`]: one pass over the text, no allocation, bounding bracket nesting and the
//!    token count. Only then is the text parsed.
//! 2. [`check_document`]: each fragment's expanded field count computed once (memoised), so
//!    the size of the expanded document is known without expanding it; cycles are refused
//!    here, before async-graphql's own checks walk them.
//! 3. [`check_variables`]: nesting and size of the JSON variables, walked without recursion.
//!
//! Each refusal names the limit (`extensions.limit`) and the position, never the input.
use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, Name, Pos, ServerError, Value, Variables};

/// The bounds. Portal operations nest under ten levels and select under a hundred fields;
/// GraphiQL's introspection query, the largest legitimate document, selects about 150.
#[derive(Clone, Copy, Debug)]
pub struct ShapeLimits {
    /// Open `{`, `[` and `(` at once, anywhere in the text.
    pub nesting: usize,
    /// Lexical tokens in the text.
    pub tokens: usize,
    /// Bytes in one name or number (the schema's longest name is under 40).
    pub name_bytes: usize,
    /// Fields of all operations and fragment definitions, fragments expanded.
    pub fields: u64,
    /// Fragments spread inside fragments spread inside …
    pub spread_depth: usize,
    /// Nesting of lists and objects in the JSON variables.
    pub variable_nesting: usize,
    /// Values (scalars, list items, object fields) in the JSON variables.
    pub variable_values: usize,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits {
            nesting: 32,
            tokens: 10_000,
            name_bytes: 128,
            fields: 2_000,
            spread_depth: 16,
            variable_nesting: 32,
            variable_values: 10_000,
        }
    }
}

/// A request refused for its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Which limit fired: `nesting`, `tokens`, `name_bytes`, `fields`, `fragment_cycle`, `spread_depth`,
    /// `variable_nesting`, `variable_values`, `time`.
    pub limit: &'static str,
    pub message: &'static str,
    pub pos: Option<Pos>,
}

impl Refusal {
    fn new(limit: &'static str, message: &'static str, pos: Option<Pos>) -> Self {
        Refusal {
            limit,
            message,
            pos,
        }
    }

    pub fn time() -> Self {
        Refusal::new(
            "time",
            "the request took too long and was stopped; ask for less at once",
            None,
        )
    }
}

impl From<Refusal> for ServerError {
    fn from(r: Refusal) -> Self {
        let message = match r.pos {
            Some(p) => format!("{} (line {}, column {})", r.message, p.line, p.column),
            None => r.message.to_owned(),
        };
        let mut e = ServerError::new(message, r.pos);
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", "VALIDATION");
        ext.set("limit", r.limit);
        e.extensions = Some(ext);
        e
    }
}

/// Line and column (1-based, columns in characters) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> Pos {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos { line, column }
}

/// One pass over the text: bracket nesting and token count, skipping strings and comments.
/// Unterminated strings are left for the parser to report.
pub fn prescan(text: &str, limits: &ShapeLimits) -> Result<(), Refusal> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut tokens = 0usize;
    while i < b.len() {
        let c = b[i];
        let start = i;
        i += 1;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => continue,
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if b.get(i..i + 2) == Some(b"\"\"") => {
                // Block string: ends at the first `"""` not escaped as `\"""`.
                i += 2;
                while i < b.len() {
                    if b[i] == b'\\' && b.get(i + 1..i + 4) == Some(b"\"\"\"") {
                        i += 4;
                    } else if b.get(i..i + 3) == Some(b"\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limits.nesting {
                    return Err(Refusal::new(
                        "nesting",
                        "the document nests too deeply",
                        Some(position(text, start)),
                    ));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
                if i - start > limits.name_bytes {
                    return Err(Refusal::new(
                        "name_bytes",
                        "a name in the document is too long",
                        Some(position(text, start)),
                    ));
                }
            }
            _ => {}
        }
        tokens += 1;
        if tokens > limits.tokens {
            return Err(Refusal::new(
                "tokens",
                "the document is too long",
                Some(position(text, start)),
            ));
        }
    }
    Ok(())
}

/// The expanded size of every operation and fragment definition, each fragment's computed
/// once; refuses cycles, deep spread chains and documents larger than `limits.fields`.
/// Unknown fragments count as empty: validation reports them.
pub fn check_document(doc: &ExecutableDocument, limits: &ShapeLimits) -> Result<(), Refusal> {
    let mut sizes = Sizes {
        doc,
        limits,
        done: HashMap::with_capacity(doc.fragments.len()),
    };
    let mut total = 0u64;
    for (_, op) in doc.operations.iter() {
        total = total.saturating_add(sizes.set(&op.node.selection_set.node, 0)?);
        sizes.within(total, op.pos)?;
    }
    for (name, fragment) in &doc.fragments {
        total = total.saturating_add(sizes.fragment(name, fragment.pos, 0)?);
        sizes.within(total, fragment.pos)?;
    }
    Ok(())
}

enum Memo {
    InProgress,
    Size(u64),
}

struct Sizes<'d> {
    doc: &'d ExecutableDocument,
    limits: &'d ShapeLimits,
    done: HashMap<&'d Name, Memo>,
}

impl<'d> Sizes<'d> {
    fn within(&self, size: u64, pos: Pos) -> Result<u64, Refusal> {
        if size > self.limits.fields {
            return Err(Refusal::new(
                "fields",
                "the document selects too many fields once its fragments are expanded",
                Some(pos),
            ));
        }
        Ok(size)
    }

    fn fragment(&mut self, name: &'d Name, pos: Pos, depth: usize) -> Result<u64, Refusal> {
        match self.done.get(name) {
            Some(Memo::Size(n)) => return Ok(*n),
            Some(Memo::InProgress) => {
                return Err(Refusal::new(
                    "fragment_cycle",
                    "a fragment spreads itself, directly or through others",
                    Some(pos),
                ));
            }
            None => {}
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Ok(0);
        };
        if depth >= self.limits.spread_depth {
            return Err(Refusal::new(
                "spread_depth",
                "fragments are spread inside each other too deeply",
                Some(pos),
            ));
        }
        self.done.insert(name, Memo::InProgress);
        let size = self.set(&fragment.node.selection_set.node, depth + 1)?;
        self.done.insert(name, Memo::Size(size));
        Ok(size)
    }

    /// Recursion here follows the text's nesting, which [`prescan`] has bounded, and spread
    /// chains, bounded by `spread_depth`.
    fn set(&mut self, set: &'d SelectionSet, depth: usize) -> Result<u64, Refusal> {
        let mut n = 0u64;
        for item in &set.items {
            let size = match &item.node {
                Selection::Field(f) => 1 + self.set(&f.node.selection_set.node, depth)?,
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node, depth)?,
                Selection::FragmentSpread(s) => {
                    self.fragment(&s.node.fragment_name.node, s.pos, depth)?
                }
            };
            n = self.within(n.saturating_add(size), item.pos)?;
        }
        Ok(n)
    }
}

/// Nesting and size of the variables' values, walked with an explicit stack.
pub fn check_variables(vars: &Variables, limits: &ShapeLimits) -> Result<(), Refusal> {
    let mut stack: Vec<(&Value, usize)> = vars.values().map(|v| (v, 1)).collect();
    let mut values = 0usize;
    while let Some((v, depth)) = stack.pop() {
        values += 1;
        if values > limits.variable_values {
            return Err(Refusal::new(
                "variable_values",
                "the variables hold too many values",
                None,
            ));
        }
        if depth > limits.variable_nesting {
            return Err(Refusal::new(
                "variable_nesting",
                "the variables nest too deeply",
                None,
            ));
        }
        match v {
            Value::List(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(fields) => stack.extend(fields.values().map(|f| (f, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> ShapeLimits {
        ShapeLimits::default()
    }

    #[test]
    fn nesting_counts_brackets_outside_strings_and_comments() {
        let deep = format!("{{ a(x: {}1{}) }}", "[".repeat(40), "]".repeat(40));
        let r = prescan(&deep, &lim()).unwrap_err();
        assert_eq!(r.limit, "nesting");
        assert_eq!(
            r.pos,
            Some(Pos {
                line: 1,
                column: 38
            })
        );
        let quoted = format!(
            "{{ a(x: \"{}\", y: \"\"\"{}\\\"\"\"\"\"\") }} # {}",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100)
        );
        prescan(&quoted, &lim()).unwrap();
        let escaped = format!("{{ a(x: \"\\\"{}\") }}", "[".repeat(100));
        prescan(&escaped, &lim()).unwrap();
    }

    /// The deepest documents the prescan lets through parse, are checked and validate on a
    /// quarter of a tokio worker's 2 MiB stack.
    #[test]
    fn deepest_allowed_documents_fit_a_small_stack() {
        let n = lim().nesting;
        let shapes = [
            format!("{{ a(x: {}1{}) }}", "[".repeat(n - 2), "]".repeat(n - 2)),
            format!("{{ a(x: {}1{}) }}", "{a: ".repeat(n - 2), "}".repeat(n - 2)),
            format!("{}{}", "{ a ".repeat(n), "}".repeat(n)),
            format!(
                "query($v: [Int] = {}1{}) {{ a }}",
                "[".repeat(n - 1),
                "]".repeat(n - 1)
            ),
        ];
        for q in shapes {
            prescan(&q, &lim()).unwrap();
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || {
                    let doc = async_graphql::parser::parse_query(&q).unwrap();
                    check_document(&doc, &lim()).unwrap();
                    let schema = crate::schema::schema_builder(Default::default()).finish();
                    let resp = futures_util::FutureExt::now_or_never(schema.execute(q.as_str()));
                    assert!(resp.is_some_and(|r| !r.errors.is_empty()));
                })
                .unwrap()
                .join()
                .unwrap();
        }
    }

    #[test]
    fn token_count_is_bounded() {
        let long = format!("{{ {} }}", "a ".repeat(20_000));
        assert_eq!(prescan(&long, &lim()).unwrap_err().limit, "tokens");
        prescan(&format!("{{ {} }}", "a ".repeat(100)), &lim()).unwrap();
        let name = format!("{{ {} }}", "a".repeat(1000));
        assert_eq!(prescan(&name, &lim()).unwrap_err().limit, "name_bytes");
    }

    #[test]
    fn positions_are_lines_and_characters() {
        assert_eq!(position("ab\ncdé{", 7), Pos { line: 2, column: 4 });
        assert_eq!(position("{", 0), Pos { line: 1, column: 1 });
    }

    fn doc(text: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(text).unwrap()
    }

    /// Fragments F0..Fn, each spreading the next `fan` times: 2^n fields once expanded.
    pub fn fan_out(levels: usize, fan: usize) -> String {
        let mut q = String::from("query { ...F0 }\n");
        for i in 0..levels {
            let spreads: String = (0..fan).map(|_| format!("...F{} ", i + 1)).collect();
            q.push_str(&format!("fragment F{i} on Query {{ {spreads} }}\n"));
        }
        q.push_str(&format!(
            "fragment F{levels} on Query {{ me {{ role }} }}\n"
        ));
        q
    }

    #[test]
    fn fragment_fan_out_is_sized_without_expanding() {
        let r = check_document(&doc(&fan_out(40, 4)), &lim()).unwrap_err();
        assert_eq!(r.limit, "spread_depth");
        let r = check_document(&doc(&fan_out(12, 4)), &lim()).unwrap_err();
        assert_eq!(r.limit, "fields");
        check_document(&doc(&fan_out(3, 2)), &lim()).unwrap();
    }

    #[test]
    fn fragment_cycles_are_refused() {
        let q = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert_eq!(
            check_document(&doc(q), &lim()).unwrap_err().limit,
            "fragment_cycle"
        );
        let q = "{ ...A } fragment A on Query { me { ...A } }";
        assert_eq!(
            check_document(&doc(q), &lim()).unwrap_err().limit,
            "fragment_cycle"
        );
    }

    #[test]
    fn unused_fragments_count_too() {
        let mut q = fan_out(12, 4);
        q = q.replacen("query { ...F0 }", "query { me { role } }", 1);
        assert_eq!(
            check_document(&doc(&q), &lim()).unwrap_err().limit,
            "fields"
        );
    }

    #[test]
    fn variables_are_walked_without_recursion() {
        let mut v = serde_json::json!(1);
        for _ in 0..100 {
            v = serde_json::json!([v]);
        }
        let vars = Variables::from_json(serde_json::json!({ "x": v }));
        assert_eq!(
            check_variables(&vars, &lim()).unwrap_err().limit,
            "variable_nesting"
        );
        let wide = Variables::from_json(serde_json::json!({ "x": vec![1; 20_000] }));
        assert_eq!(
            check_variables(&wide, &lim()).unwrap_err().limit,
            "variable_values"
        );
        let ok = Variables::from_json(serde_json::json!({ "x": { "a": [1, 2, { "b": null }] } }));
        check_variables(&ok, &lim()).unwrap();
    }
}
