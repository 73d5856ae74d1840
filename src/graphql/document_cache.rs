//! Parsed operations, cached by their exact text. A portal sends the same few operations
//! over and over; parsing them (pest) was a visible share of a request's CPU. Validation
//! still runs on every request. Bounded in count and in the size of what it keeps:
//! when full, the cache starts over, and long documents are never kept.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Portal operations are a few hundred bytes; anything much longer is not worth keeping.
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

pub struct DocumentCache {
    docs: Arc<Mutex<HashMap<Arc<str>, ExecutableDocument>>>,
    capacity: usize,
}

impl DocumentCache {
    pub fn new(capacity: usize) -> Self {
        DocumentCache {
            docs: Arc::default(),
            capacity,
        }
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentCacheExt {
            docs: self.docs.clone(),
            capacity: self.capacity,
        })
    }
}

struct DocumentCacheExt {
    docs: Arc<Mutex<HashMap<Arc<str>, ExecutableDocument>>>,
    capacity: usize,
}

#[async_trait::async_trait]
impl Extension for DocumentCacheExt {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let lock = || self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(doc) = lock().get(query) {
            return Ok(doc.clone());
        }
        let doc = next.run(ctx, query, variables).await?;
        if query.len() > MAX_CACHED_QUERY_BYTES {
            return Ok(doc);
        }
        let mut docs = lock();
        if docs.len() >= self.capacity {
            docs.clear();
        }
        docs.insert(Arc::from(query), doc.clone());
        Ok(doc)
    }
}
