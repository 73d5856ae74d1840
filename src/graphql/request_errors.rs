//! The one clean-up every response passes through, over HTTP and websocket alike: every
//! error leaves with a stable `extensions.code`, and no error carries async-graphql's own
//! words, which quote the request back (an unknown enum value, a misspelt field, a whole
//! source line holding a patient's name and SSN for a syntax error).
//!
//! Errors our code raised already have a code and are left alone. The rest are request
//! errors (no path: parse, validation, operation selection), which get a message of ours
//! naming the kind of problem and its position, or field errors without a code, which are
//! logged by path and shown as "internal error" — except argument coercion failures, which
//! are the caller's mistake.
use async_graphql::{ErrorExtensionValues, Pos, Response, ServerError};

/// What a request error was, in our words, from async-graphql's message. Anything not
/// recognised gets the generic words: a new message upstream can never leak through.
fn kind(message: &str) -> (&'static str, Option<&'static str>) {
    const TABLE: &[(&str, &str, &str, Option<&str>)] = &[
        // (prefix, must also contain, our words, limit)
        ("Unknown field", "", "unknown field", None),
        ("Unknown argument", "", "unknown argument", None),
        ("Unknown type", "", "unknown type", None),
        ("Unknown directive", "", "unknown directive", None),
        ("Unknown fragment", "", "unknown fragment", None),
        (
            "Unknown operation named",
            "",
            "the document has no operation of the requested operationName",
            None,
        ),
        (
            "Operation name required",
            "",
            "the document holds several operations: name one with operationName",
            None,
        ),
        (
            "Fragment \"",
            "is never used",
            "a fragment is defined but never used",
            None,
        ),
        (
            "Cannot spread fragment",
            "",
            "a fragment spreads itself",
            None,
        ),
        ("Fragment", "", "a fragment cannot be used here", None),
        (
            "Variable",
            "is not defined",
            "a variable is used but not declared",
            None,
        ),
        (
            "Variable",
            "is not used",
            "a variable is declared but not used",
            None,
        ),
        (
            "Variable",
            "input type",
            "a variable is declared with a type that is not an input type",
            None,
        ),
        (
            "Variable",
            "",
            "a variable's type does not fit where it is used",
            None,
        ),
        (
            "There can only be one variable",
            "",
            "a variable is declared twice",
            None,
        ),
        (
            "There can only be one argument",
            "",
            "an argument is given twice",
            None,
        ),
        (
            "Invalid value for argument",
            "",
            "an argument has the wrong type or format",
            None,
        ),
        (
            "Invalid default value",
            "",
            "a variable's default value has the wrong type or format",
            None,
        ),
        (
            "Field \"",
            "is required",
            "a required argument is missing",
            None,
        ),
        (
            "Field \"",
            "must not have a selection",
            "a field of a scalar or enum type cannot have a selection of subfields",
            None,
        ),
        (
            "Field \"",
            "must have a selection",
            "a field of an object type needs a selection of subfields",
            None,
        ),
        (
            "Fields \"",
            "",
            "two fields with the same response name conflict: give them different aliases",
            None,
        ),
        ("Directive \"", "", "a directive is not allowed here", None),
        ("Duplicate directive", "", "a directive is repeated", None),
        (
            "Query is nested too deep",
            "",
            "the query nests too deeply",
            Some("depth"),
        ),
        (
            "Query is too complex",
            "",
            "the query is too complex: ask for fewer fields or smaller pages",
            Some("complexity"),
        ),
        (
            "The recursion depth",
            "",
            "fragments and selections nest too deeply",
            Some("recursion_depth"),
        ),
        (
            "The number of directives",
            "",
            "a field carries too many directives",
            Some("directives"),
        ),
        (
            "Schema is not configured for",
            "",
            "this kind of operation is not supported",
            None,
        ),
        (
            "Subscriptions are not supported",
            "",
            "subscriptions are served on the websocket at /graphql/ws",
            None,
        ),
        (
            "The Upload type",
            "",
            "file uploads are not supported",
            None,
        ),
    ];
    TABLE
        .iter()
        .find(|(prefix, also, _, _)| message.starts_with(prefix) && message.contains(also))
        .map_or(
            ("the request is not valid", None),
            |(_, _, words, limit)| (*words, *limit),
        )
}

/// async-graphql's own messages for values that do not coerce to the argument's type.
fn is_input_error(message: &str) -> bool {
    [
        "Expected input type",
        "Failed to parse",
        "Invalid value for argument",
    ]
    .iter()
    .any(|p| message.starts_with(p))
}

/// " (line 3, column 7)", or nothing without a position.
fn at(pos: Option<&Pos>) -> String {
    pos.map(|p| format!(" (line {}, column {})", p.line, p.column))
        .unwrap_or_default()
}

/// "Did you mean …" lists names from the schema, never the caller's input; shown only to
/// signed-in callers outside production.
fn suggestion(message: &str) -> Option<&str> {
    message
        .find("Did you mean")
        .map(|i| &message[i..])
        .filter(|s| s.len() <= 200)
}

/// Our words for a request error, in place.
fn reword(e: &mut ServerError, suggestions: bool) {
    let (words, limit) = kind(&e.message);
    let mut message = format!("{words}{}", at(e.locations.first()));
    if suggestions && let Some(s) = suggestion(&e.message) {
        message.push_str(". ");
        message.push_str(s);
    }
    e.message = message;
    let ext = e
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    ext.set("code", "VALIDATION");
    if let Some(limit) = limit {
        ext.set("limit", limit);
    }
}

/// A parse error in our words: its kind and position, never the source line it quotes.
pub fn syntax(err: &async_graphql::parser::Error) -> ServerError {
    use async_graphql::parser::Error as E;
    let words = match err {
        E::Syntax { .. } => "syntax error",
        E::MultipleOperations { .. } => {
            "an anonymous operation must be the only operation in the document"
        }
        E::OperationDuplicated { .. } => "two operations have the same name",
        E::FragmentDuplicated { .. } => "two fragments have the same name",
        E::MissingOperation => "the document has no operation",
        _ => "the document is not a valid GraphQL request",
    };
    let pos = err.positions().next();
    let mut e = ServerError::new(format!("{words}{}", at(pos.as_ref())), pos);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", "VALIDATION");
    e.extensions = Some(ext);
    e
}

/// Give every error of `resp` a code and our own words (see the module comment).
pub fn clean(resp: &mut Response, suggestions: bool) {
    for e in &mut resp.errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if has_code {
            continue;
        }
        if e.path.is_empty() {
            reword(e, suggestions);
        } else if is_input_error(&e.message) {
            let ext = e
                .extensions
                .get_or_insert_with(ErrorExtensionValues::default);
            ext.set("code", "VALIDATION");
            e.message = format!(
                "an argument has the wrong type or format{}",
                at(e.locations.first())
            );
        } else {
            // The message may quote input; log where it happened, not what it says.
            let path = serde_json::to_string(&e.path).unwrap_or_default();
            tracing::error!(error.path = %path, "field error without a code");
            let ext = e
                .extensions
                .get_or_insert_with(ErrorExtensionValues::default);
            ext.set("code", "INTERNAL");
            e.message = "internal error".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_messages_get_generic_words() {
        assert_eq!(
            kind("Something new \"secret\"").0,
            "the request is not valid"
        );
        assert_eq!(
            kind(r#"Unknown field "ssnn" on type "Patient". Did you mean "ssn"?"#).0,
            "unknown field"
        );
        assert_eq!(
            kind(r#"Variable "$x" is not defined by operation "Q"."#).0,
            "a variable is used but not declared"
        );
    }

    #[test]
    fn reworded_errors_keep_position_and_drop_input() {
        let mut e = ServerError::new(
            r#"Unknown field "Testy" on type "Query". Did you mean "me"?"#,
            Some(Pos { line: 2, column: 5 }),
        );
        reword(&mut e, false);
        assert_eq!(e.message, "unknown field (line 2, column 5)");
        let mut e = ServerError::new(
            r#"Unknown field "mee" on type "Query". Did you mean "me"?"#,
            None,
        );
        reword(&mut e, true);
        assert_eq!(e.message, r#"unknown field. Did you mean "me"?"#);
    }

    #[test]
    fn syntax_errors_name_the_position_only() {
        let err = async_graphql::parser::parse_query(
            "mutation { createPatient(input: { givenName: \"Testy\", ssn: \"123-45-6789\" }",
        )
        .unwrap_err();
        let e = syntax(&err);
        assert!(
            e.message.starts_with("syntax error (line 1, column"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("Testy") && !e.message.contains("6789"));
    }
}
