//! Generative tests of the request pipeline: random and adversarially nested documents and
//! variables, run through the real schema (limits, parse, validation, execution, error
//! clean-up) on a thread with a tokio worker's 2 MiB stack. A stack overflow aborts the
//! test binary, a panic fails the case; every error must carry a code, and no message may
//! repeat the marker the inputs carry.
use std::sync::OnceLock;

use async_graphql::{Request, Variables};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value as Json, json};

use super::{AppSchema, schema_builder};
use crate::graphql::Limits;

/// Appears in every generated name and value; must never come back in an error message.
const MARK: &str = "Zqx";

fn schema() -> &'static AppSchema {
    static S: OnceLock<AppSchema> = OnceLock::new();
    S.get_or_init(|| schema_builder(Limits::default()).finish())
}

fn check(query: String, variables: Json) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let req = Request::new(query).variables(Variables::from_json(variables));
    let resp = rt.block_on(schema().execute(req));
    for e in &resp.errors {
        let code = e.extensions.as_ref().and_then(|x| x.get("code"));
        prop_assert!(code.is_some(), "error without a code: {}", e.message);
        prop_assert!(!e.message.contains(MARK), "input echoed: {}", e.message);
    }
    Ok(())
}

/// Run `strategy` on a thread whose stack is a tokio worker's. `PROPTEST_CASES` overrides
/// the number of cases (e.g. 20000 for a long local run).
fn run<S>(cases: u32, strategy: fn() -> S)
where
    S: Strategy<Value = (String, Json)> + 'static,
{
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(cases);
            let mut runner = TestRunner::new(Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            });
            runner
                .run(&strategy(), |(q, v)| check(q, v))
                .unwrap_or_else(|e| panic!("{e}"));
        })
        .unwrap()
        .join()
        .unwrap();
}

fn nesting() -> impl Strategy<Value = (String, Json)> {
    let open = prop::sample::select(vec!["[", "{a: ", "{ me ", "(", "{", "[{b: "]);
    let close = prop::sample::select(vec!["]", "}", ")", "", "]}"]);
    let place = prop::sample::select(vec![
        "{ patient(id: OPEN\"Zqx\"CLOSE) { id } }",
        "query($v: [Int] = OPEN1CLOSE) { me { role } }",
        "mutation { recordAllergy(patientId: \"Zqx\", input: OPENCLOSE) { id } }",
        "{ OPENZqxCLOSE }",
        "query @Zqx(a: OPEN1CLOSE) { me { role } }",
    ]);
    (open, 0usize..3000, close, place).prop_map(|(o, n, c, p)| {
        let q = p
            .replace("OPEN", &o.repeat(n))
            .replace("CLOSE", &c.repeat(n));
        (q, json!({}))
    })
}

fn fragments() -> impl Strategy<Value = (String, Json)> {
    // Fragments F0..Fn; each spreads `fan` of the fragments (possibly earlier ones: cycles).
    (
        1usize..40,
        1usize..12,
        prop::collection::vec(0usize..40, 0..12),
    )
        .prop_map(|(levels, fan, back)| {
            let mut q = String::from("query Zqx { ...F0 }\n");
            for i in 0..levels {
                let mut spreads: String = (0..fan).map(|_| format!("...F{} ", i + 1)).collect();
                if let Some(b) = back.get(i) {
                    spreads.push_str(&format!("...F{} ", b % levels));
                }
                q.push_str(&format!(
                    "fragment F{i} on Query {{ {spreads} me {{ role }} }}\n"
                ));
            }
            q.push_str(&format!(
                "fragment F{levels} on Query {{ Zqx: me {{ role }} }}\n"
            ));
            (q, json!({}))
        })
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "Zqx[a-z]{0,6}".prop_map(Json::String),
        any::<bool>().prop_map(Json::Bool),
    ];
    let tree = leaf.prop_recursive(12, 200, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map("Zqx[a-z]{0,3}", inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    });
    // And plain deep chains, up to what serde_json itself lets through (128).
    let chain = (0usize..127, any::<bool>()).prop_map(|(n, list)| {
        let mut v = json!("Zqx");
        for _ in 0..n {
            v = if list {
                json!([v])
            } else {
                json!({ "Zqx": v })
            };
        }
        v
    });
    prop_oneof![tree, chain]
}

fn variables() -> impl Strategy<Value = (String, Json)> {
    let query = prop::sample::select(vec![
        "query($id: ID!) { patient(id: $id) { id } }",
        "query($f: PatientFilter, $n: Int) { patients(filter: $f, first: $n) { totalCount } }",
        "mutation($id: ID!, $i: AllergyInput!) { recordAllergy(patientId: $id, input: $i) { id } }",
        "query($v: [[[Int]]]) { me { role } }",
        "query($Zqx: String) { me { role } }",
    ]);
    (query, json_value(), json_value()).prop_map(|(q, a, b)| {
        (
            q.to_owned(),
            json!({ "id": a.clone(), "f": b.clone(), "n": a.clone(), "i": b, "v": a.clone(), "Zqx": a }),
        )
    })
}

fn noise() -> impl Strategy<Value = (String, Json)> {
    // Random text over GraphQL's punctuation, and valid operations with bytes spliced in.
    let random = "[\\[\\]{}()a-zZqx$@!:.=|&\"#0-9 \n\\\\]{0,400}";
    let valid = prop::sample::select(vec![
        "{ me { role email } }",
        "query Q($id: ID!) { patient(id: $id) { givenName allergies { substance } } }",
        "mutation { login(email: \"Zqx@example.test\", password: \"Zqx\") { accessToken } }",
        "{ patients(first: 5, filter: { familyName: \"Zqx\" }) { edges { cursor } } }",
    ]);
    let spliced = (
        valid,
        prop::collection::vec((0usize..120, "[\\[\\]{}()\"#$@!:Zqx]{1,4}"), 1..5),
    )
        .prop_map(|(v, cuts)| {
            let mut s = v.to_owned();
            for (at, text) in cuts {
                let mut at = at.min(s.len());
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, &text);
            }
            s
        });
    prop_oneof![random.prop_map(String::from), spliced].prop_map(|q| (q, json!({ "id": "Zqx" })))
}

#[test]
fn nested_documents_never_overflow() {
    run(300, nesting);
}

#[test]
fn fragment_graphs_never_blow_up() {
    run(300, fragments);
}

#[test]
fn nested_variables_never_overflow() {
    run(300, variables);
}

#[test]
fn random_documents_get_codes_and_no_echo() {
    run(500, noise);
}
