//! Operations seen before: parsed once, and validated once per shape of their variables.
//!
//! A portal sends the same few operations over and over. Parsing one (pest) and running
//! async-graphql's two dozen validation rules over it were, together, the largest share of a
//! request's instructions, though the outcome is the same every time the text is. So:
//!
//! - The parsed document is kept by its exact text and handed to async-graphql with the
//!   request; every document is parsed here, after the shape limits (`super::limits`), never
//!   by async-graphql. The depth and directive limits still run on every request.
//! - A *successful* validation is kept by the operation's text, its name and the shape of its
//!   variables, and answers the next request with the same key. Errors are never kept: an
//!   invalid request is always validated in full.
//!
//! Only one validation rule looks at variable *values*: `ArgumentsOfCorrectType` checks each
//! value against the type of the argument it is passed to (another rule has already required
//! that type to be the variable's declared type). Results are therefore kept only for
//! operations whose variables are all declared with scalars whose validity the shape of the
//! value decides: the built-in ones, and `DateTime` and `NaiveDate`, whose `is_valid`
//! accepts every value (their text is parsed when a resolver reads the argument, on every
//! request alike). A variable's shape is the class of value that decides validity for
//! those: null, boolean, string, a number that fits i64, another number, a list (with its
//! items' shapes) or an object. Enums, `JSON` and input objects have validity rules of
//! their own, so operations that declare them are validated every time. Depth comes from the document alone; complexity also from
//! the `first` of each page (`patients`, `accessHistory`), which may be a variable: integers
//! are therefore part of the shape by value, so a plan validated for `first: 10` is never
//! reused for `first: 100`.
//!
//! Both maps are bounded in count and in the size of what they keep; when full they start
//! over.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{ExtensionContext, NextValidation};
use async_graphql::parser::types::{BaseType, ExecutableDocument, Type};
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Value};

use super::limits::ShapeLimits;

/// Portal operations are a few hundred bytes; anything much longer is not worth keeping.
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;
/// Variable shapes longer than this (long id lists) are not worth keeping either.
const MAX_SHAPE_BYTES: usize = 512;
/// Scalars whose validity depends only on the shape of the value (async-graphql's
/// `is_valid` for each; `DateTime`'s and `NaiveDate`'s accept any value).
const SHAPE_DECIDES: &[&str] = &[
    "ID",
    "String",
    "Int",
    "Float",
    "Boolean",
    "DateTime",
    "NaiveDate",
];

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    query: Arc<str>,
    operation: Option<String>,
    shape: String,
}

struct Shared {
    documents: Mutex<HashMap<Arc<str>, ExecutableDocument>>,
    validated: Mutex<HashMap<Key, ValidationResult>>,
    capacity: usize,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, cap: usize, k: K, v: V) {
    let mut map = locked(map);
    if map.len() >= cap {
        map.clear();
    }
    map.insert(k, v);
}

pub struct OperationCache(Arc<Shared>);

impl OperationCache {
    pub fn new(capacity: usize) -> Self {
        OperationCache(Arc::new(Shared {
            documents: Mutex::default(),
            validated: Mutex::default(),
            capacity,
        }))
    }
}

impl OperationCache {
    /// This request's part: the shared maps and, once known, the request's key.
    pub fn request(&self) -> RequestCache {
        RequestCache {
            shared: self.0.clone(),
            key: OnceLock::new(),
        }
    }
}

pub struct RequestCache {
    shared: Arc<Shared>,
    /// This request's key, when its validation may be kept.
    key: OnceLock<Key>,
}

impl RequestCache {
    /// Attach the cached document to `req`, or check the text against the shape limits,
    /// parse it and check the document (keeping it when short), and remember the key its
    /// validation may be kept under. A cached document has passed those checks already.
    pub fn prepare(&self, req: &mut Request, limits: &ShapeLimits) -> ServerResult<()> {
        let keep = req.query.len() <= MAX_CACHED_QUERY_BYTES;
        let docs = &self.shared.documents;
        let cached = keep
            .then(|| {
                locked(docs)
                    .get_key_value(req.query.as_str())
                    .map(|(k, d)| (k.clone(), d.clone()))
            })
            .flatten();
        let (query, doc) = match cached {
            Some(hit) => hit,
            None => {
                super::limits::prescan(&req.query, limits)?;
                let doc = async_graphql::parser::parse_query(&req.query)
                    .map_err(|e| super::request_errors::syntax(&e))?;
                super::limits::check_document(&doc, limits)?;
                if !keep {
                    req.set_parsed_query(doc);
                    return Ok(());
                }
                let text: Arc<str> = Arc::from(req.query.as_str());
                insert_bounded(docs, self.shared.capacity, text.clone(), doc.clone());
                (text, doc)
            }
        };
        let shape = variable_shape(&doc, &req.variables);
        req.set_parsed_query(doc);
        if let Some(shape) = shape {
            let _ = self.key.set(Key {
                query,
                operation: req.operation_name.clone(),
                shape,
            });
        }
        Ok(())
    }

    /// The `validation` hook.
    pub async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let Some(key) = self.key.get() else {
            return next.run(ctx).await;
        };
        if let Some(done) = locked(&self.shared.validated).get(key) {
            return Ok(*done);
        }
        let result = next.run(ctx).await?;
        insert_bounded(
            &self.shared.validated,
            self.shared.capacity,
            key.clone(),
            result,
        );
        Ok(result)
    }
}

/// The shape of the declared variables' values, in declaration order, or `None` when some
/// variable is not declared with a built-in scalar (or the shape is too long to keep).
fn variable_shape(doc: &ExecutableDocument, vars: &async_graphql::Variables) -> Option<String> {
    let mut shape = String::new();
    for (_, op) in doc.operations.iter() {
        for def in &op.node.variable_definitions {
            if !shape_decides(&def.node.var_type.node) {
                return None;
            }
            let name = &def.node.name.node;
            shape.push_str(name);
            shape.push('=');
            match vars.get(name) {
                Some(v) => value_shape(v, &mut shape),
                None => shape.push('-'),
            }
            shape.push(';');
            if shape.len() > MAX_SHAPE_BYTES {
                return None;
            }
        }
    }
    Some(shape)
}

fn shape_decides(ty: &Type) -> bool {
    match &ty.base {
        BaseType::Named(name) => SHAPE_DECIDES.contains(&name.as_str()),
        BaseType::List(inner) => shape_decides(inner),
    }
}

fn value_shape(v: &Value, out: &mut String) {
    let c = match v {
        Value::Null => 'n',
        Value::Boolean(_) => 'b',
        Value::String(_) => 's',
        Value::Number(n) if n.is_i64() => {
            // By value: complexity depends on it (see the module comment).
            out.push('i');
            out.push_str(&n.to_string());
            return;
        }
        Value::Number(_) => 'f',
        Value::Binary(_) => 'x',
        Value::Enum(_) => 'e',
        Value::Object(_) => 'o',
        Value::List(items) => {
            out.push('[');
            for item in items {
                value_shape(item, out);
            }
            out.push(']');
            return;
        }
    };
    out.push(c);
}
