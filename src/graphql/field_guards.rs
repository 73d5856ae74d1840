//! Every field's guard, declared in one table (the schema's, `schema::guards`) that a
//! test checks against the built schema and the pipeline enforces on every field it
//! resolves. A field without an entry is refused (fail closed): a new field is unreachable
//! until someone writes down what guards it.
use std::collections::HashMap;

use crate::identity::Role;

/// What guards a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Anyone, signed in or not. Only for sign-in itself and for values that carry no PHI
    /// (page information, a sign-in's own tokens).
    Public,
    /// A signed-in viewer, even one whose session may only enrol MFA.
    Restricted,
    /// Any signed-in viewer with full rights.
    SignedIn,
    /// Signed-in viewers of these roles; anyone else FORBIDDEN (audited).
    Roles(&'static [Role]),
    /// A field of an object that only exists under the named `access` capability (checked
    /// when the object was made, e.g. `PatientScope<Demographics>`); signed-in viewers only.
    Capability(&'static str),
    /// The resolver asks `access` itself (the named decision) before touching data, e.g. a
    /// nullable clinical field under the patient's consent; signed-in viewers only.
    Access(&'static str),
}

/// The guards of one GraphQL type: `all` for every field not listed in `fields`.
pub struct TypeGuards {
    pub type_name: &'static str,
    pub all: Option<Guard>,
    pub fields: &'static [(&'static str, Guard)],
}

/// The table, indexed for the per-field lookup.
pub struct FieldGuards {
    types: HashMap<&'static str, (Option<Guard>, HashMap<&'static str, Guard>)>,
}

impl FieldGuards {
    pub fn new(table: &'static [TypeGuards]) -> FieldGuards {
        let mut types = HashMap::new();
        for t in table {
            let fields = t.fields.iter().copied().collect();
            let previous = types.insert(t.type_name, (t.all, fields));
            assert!(previous.is_none(), "{} is listed twice", t.type_name);
        }
        FieldGuards { types }
    }

    /// The guard of `type_name.field`, if one is declared.
    pub fn lookup(&self, type_name: &str, field: &str) -> Option<Guard> {
        let (all, fields) = self.types.get(type_name)?;
        fields.get(field).copied().or(*all)
    }

    /// Every declared `(type, field)`; `"*"` stands for a type's `all`.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.types.iter().flat_map(|(t, (all, fields))| {
            all.iter()
                .map(move |_| (*t, "*"))
                .chain(fields.keys().map(move |f| (*t, *f)))
        })
    }
}
