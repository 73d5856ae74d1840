//! Patient queries, mutations and output types. Resolvers are thin: parse, ask `access`,
//! call one service fn, map. PHI is decrypted per field, only for fields that were asked.
use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::service::{self, NewPatient, PatientChanges, PatientFilter};
use super::types::*;
use crate::access::{self, Demographics, PatientScope, Viewer};
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt, audit_read, audit_reads};
use crate::graphql::relay::{
    Connection, PageInfo, decode_cursor, encode_cursor, page_size, parse_id,
};
use crate::records::graphql as records;
use entity::patients;

/// A patient. Demographics are visible to the patient, their care team (or a provider with
/// emergency access) and administrators; clinical fields also need the patient's consent.
pub struct Patient {
    row: Arc<patients::Model>,
    keys: KeyRing,
    scope: PatientScope<Demographics>,
}

impl Patient {
    pub fn new(row: patients::Model, keys: &KeyRing, scope: PatientScope<Demographics>) -> Self {
        Patient {
            row: Arc::new(row),
            keys: keys.clone(),
            scope,
        }
    }

    fn slot(&self, column: &'static str) -> Slot<'_> {
        Slot {
            table: service::TABLE,
            column,
            row: &self.row.id,
        }
    }

    fn open(&self, column: &'static str, ct: &[u8]) -> AppResult<String> {
        self.keys.open_str(self.slot(column), ct)
    }

    fn open_opt(&self, column: &'static str, ct: &Option<Vec<u8>>) -> AppResult<Option<String>> {
        ct.as_deref().map(|c| self.open(column, c)).transpose()
    }

    fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        column: &'static str,
        ct: &Option<Vec<u8>>,
    ) -> AppResult<Option<T>> {
        match ct {
            None => Ok(None),
            Some(c) => {
                let bytes = self
                    .keys
                    .open(self.slot(column), c)
                    .map_err(AppError::internal)?;
                // serde's message may quote the decrypted value: log where, not what.
                serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    tracing::error!(
                        column,
                        category = ?e.classify(),
                        line = e.line(),
                        at = e.column(),
                        "stored JSON does not decode"
                    );
                    AppError::internal_msg("stored JSON does not decode")
                })
            }
        }
    }

    /// The patient as a FHIR R4 `Patient` resource.
    fn fhir_value(&self) -> AppResult<serde_json::Value> {
        let address: Option<Address> = self.open_json("address", &self.row.address_enc)?;
        let f = crate::fhir::PatientFields {
            id: self.row.id,
            mrn: self.open("mrn", &self.row.mrn_enc)?,
            given_name: self.open("given_name", &self.row.given_name_enc)?,
            middle_name: self.open_opt("middle_name", &self.row.middle_name_enc)?,
            family_name: self.open("family_name", &self.row.family_name_enc)?,
            birth_date: self.birth_date_value()?,
            sex_at_birth: self.sex_at_birth_value()?.as_str(),
            email: self.open_opt("email", &self.row.email_enc)?,
            phone: self.open_opt("phone", &self.row.phone_enc)?,
            address: address.as_ref().map(|a| crate::fhir::Address {
                line1: a.line1.as_deref(),
                line2: a.line2.as_deref(),
                city: a.city.as_deref(),
                state_province: a.state_province.as_deref(),
                postal_code: a.postal_code.as_deref(),
                country: a.country.as_deref(),
            }),
            preferred_language: self.row.preferred_language.clone(),
            active: self.row.archived_at.is_none(),
            version: self.row.version,
            updated_at: self.row.updated_at,
        };
        Ok(crate::fhir::patient_resource(&f))
    }

    /// Sealed since m20261201_150000; a row an older instance wrote still has the plaintext
    /// column until the start-up step re-seals it.
    fn sex_at_birth_value(&self) -> AppResult<SexAtBirth> {
        let stored = self.open_opt("sex_at_birth", &self.row.sex_at_birth_enc)?;
        SexAtBirth::parse(stored.as_deref().unwrap_or(&self.row.sex_at_birth))
            .ok_or_else(|| AppError::internal_msg("bad sex_at_birth"))
    }

    fn birth_date_value(&self) -> AppResult<NaiveDate> {
        self.open("birth_date", &self.row.birth_date_enc)?
            .parse()
            .map_err(|_| AppError::internal_msg("stored birth date is malformed"))
    }
}

#[Object]
impl Patient {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// Medical record number (unique).
    async fn mrn(&self) -> Result<String> {
        Ok(self.open("mrn", &self.row.mrn_enc)?)
    }
    async fn given_name(&self) -> Result<String> {
        Ok(self.open("given_name", &self.row.given_name_enc)?)
    }
    async fn middle_name(&self) -> Result<Option<String>> {
        Ok(self.open_opt("middle_name", &self.row.middle_name_enc)?)
    }
    async fn family_name(&self) -> Result<String> {
        Ok(self.open("family_name", &self.row.family_name_enc)?)
    }
    async fn birth_date(&self) -> Result<NaiveDate> {
        Ok(self.birth_date_value()?)
    }
    async fn sex_at_birth(&self) -> Result<SexAtBirth> {
        Ok(self.sex_at_birth_value()?)
    }
    async fn gender_identity(&self) -> Result<GenderIdentity> {
        let stored = self.open_opt("gender_identity", &self.row.gender_identity_enc)?;
        Ok(
            GenderIdentity::parse(stored.as_deref().unwrap_or(&self.row.gender_identity))
                .ok_or_else(|| AppError::internal_msg("bad gender_identity"))?,
        )
    }
    /// Free text when `genderIdentity` is `OTHER`.
    async fn gender_identity_other(&self) -> Result<Option<String>> {
        Ok(self.open_opt("gender_identity_other", &self.row.gender_identity_other_enc)?)
    }
    /// Lower-case e-mail address.
    async fn email(&self) -> Result<Option<String>> {
        Ok(self.open_opt("email", &self.row.email_enc)?)
    }
    /// E.164 phone number.
    async fn phone(&self) -> Result<Option<String>> {
        Ok(self.open_opt("phone", &self.row.phone_enc)?)
    }
    async fn address(&self) -> Result<Option<Address>> {
        Ok(self.open_json("address", &self.row.address_enc)?)
    }
    async fn emergency_contact(&self) -> Result<Option<EmergencyContact>> {
        Ok(self.open_json("emergency_contact", &self.row.emergency_contact_enc)?)
    }
    /// Last four digits of the SSN, for the patient and administrators only. The full
    /// number is write-only.
    async fn ssn_last4(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        access::ssn_digits(ctx.state()?, ctx.viewer()?, &self.scope).await?;
        Ok(self.open_opt("ssn_last4", &self.row.ssn_last4_enc)?)
    }
    /// BCP 47 language tag.
    async fn preferred_language(&self) -> Option<String> {
        self.row.preferred_language.clone()
    }
    async fn consent_to_contact(&self) -> bool {
        self.row.consent_to_contact
    }
    /// Increments on every change; pass it back as `expectedVersion` to `updatePatient`.
    async fn version(&self) -> i32 {
        self.row.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.row.archived_at
    }
    /// Medical records across kinds, newest first: only the kinds the viewer's grant
    /// covers (a care-team provider sees the categories the patient consented to; asking
    /// for other kinds by name is CONSENT_REQUIRED), `totalCount` and cursors included.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn records(
        &self,
        ctx: &Context<'_>,
        filter: Option<records::RecordFilter>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<Connection<records::MedicalRecord>>> {
        Ok(Some(
            records::records(ctx, self.row.id, filter, first, after).await?,
        ))
    }
    /// Lab results, newest first (RECORDS consent).
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn lab_results(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<Connection<records::LabResult>>> {
        Ok(Some(
            records::lab_results(ctx, self.row.id, first, after).await?,
        ))
    }
    /// Visit notes, newest first (RECORDS consent).
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn visit_notes(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<Connection<records::VisitNote>>> {
        Ok(Some(
            records::visit_notes(ctx, self.row.id, first, after).await?,
        ))
    }
    /// Immunizations, newest first (IMMUNIZATIONS consent).
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn immunizations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<Connection<records::Immunization>>> {
        Ok(Some(
            records::immunizations(ctx, self.row.id, first, after).await?,
        ))
    }
    /// Clinical documents, newest first (DOCUMENTS consent).
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn documents(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<Connection<records::ClinicalDocument>>> {
        Ok(Some(
            records::documents(ctx, self.row.id, first, after).await?,
        ))
    }
    /// Medications, oldest first; only ACTIVE ones with `activeOnly` (MEDICATIONS consent).
    async fn medications(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] active_only: bool,
    ) -> Result<Option<Vec<records::Medication>>> {
        Ok(Some(
            records::medications(ctx, self.row.id, active_only).await?,
        ))
    }
    /// Allergies and intolerances, oldest first (ALLERGIES consent).
    async fn allergies(&self, ctx: &Context<'_>) -> Result<Option<Vec<records::Allergy>>> {
        Ok(Some(records::allergies(ctx, self.row.id).await?))
    }
    /// Insurance coverages (the patient, ADMIN, or the care team under BILLING consent).
    async fn coverages(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<Vec<crate::billing::graphql::Coverage>>> {
        Ok(Some(
            crate::billing::graphql::coverages_of(ctx, self.row.id).await?,
        ))
    }
    /// The providers on the patient's care team, by name.
    async fn care_team(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<Vec<crate::appointments::graphql::Provider>>> {
        Ok(Some(
            crate::appointments::graphql::care_team(ctx, &self.scope).await?,
        ))
    }
    /// Appointments, soonest first, optionally of one status and starting in `[from, to)`.
    /// Every read is audited, naming the appointments shown.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn appointments(
        &self,
        ctx: &Context<'_>,
        status: Option<crate::appointments::types::AppointmentStatus>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<crate::graphql::relay::Connection<crate::appointments::graphql::Appointment>>>
    {
        Ok(Some(
            crate::appointments::graphql::patient_appointments(
                ctx,
                self.row.id,
                status,
                from,
                to,
                first,
                after,
            )
            .await?,
        ))
    }
    /// The patient as a FHIR R4 `Patient` resource.
    async fn fhir(&self) -> Result<async_graphql::Json<serde_json::Value>> {
        Ok(async_graphql::Json(self.fhir_value()?))
    }
    /// The shares of this patient's records, newest first (the patient or ADMIN).
    async fn record_shares(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<Vec<crate::records::shares::RecordShare>>> {
        Ok(Some(
            crate::records::shares::of_patient(ctx, self.row.id).await?,
        ))
    }
    /// The patient's requests to correct their records (45 CFR 164.526), newest first, with
    /// answers and statements of disagreement (the patient or ADMIN).
    async fn correction_requests(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<Vec<crate::records::corrections::CorrectionRequest>>> {
        Ok(Some(
            crate::records::corrections::of_patient(ctx, self.row.id).await?,
        ))
    }
    /// Right of access: a FHIR R4 Bundle (`searchset`) of the patient, every record the
    /// viewer may see (documents with their content; a disputed record with the patient's
    /// statement of disagreement) and the patient's appointments the viewer may see, as a
    /// file to download. One audit row lists what it contained.
    async fn fhir_export(
        &self,
        ctx: &Context<'_>,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        let patient = self.fhir_value()?;
        let appointments = crate::appointments::graphql::fhir_entries(ctx, self.row.id).await?;
        Ok(async_graphql::Json(
            records::fhir_export(ctx, self.row.id, patient, appointments).await?,
        ))
    }
}

/// A row the viewer just wrote (created, archived, restored), under their demographics scope.
async fn as_patient(
    state: &crate::state::AppState,
    viewer: &Viewer,
    row: patients::Model,
) -> AppResult<Patient> {
    let (row, scope) = access::scopes_for_rows(state, viewer, vec![row])
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    Ok(Patient::new(row, &state.keys, scope))
}

/// Names of the fields selected on a patient, recorded in its read audit row.
fn selected(field: async_graphql::SelectionField<'_>) -> Vec<&str> {
    field
        .selection_set()
        .map(|f| f.name())
        .filter(|n| !n.starts_with("__"))
        .collect()
}

/// A read's audit detail: the fields asked for (names only, never values).
#[derive(serde::Serialize)]
struct ReadDetail<'a> {
    fields: &'a [&'a str],
}

fn read_event(viewer: &Viewer, scope: &PatientScope<Demographics>, fields: &[&str]) -> AuditEvent {
    AuditEvent::by(viewer, "patient.read", "patient")
        .scope(scope)
        .resource(scope.patient_id().to_string())
        .detail_of(&ReadDetail { fields })
}

/// An edge in a patients connection.
#[derive(SimpleObject)]
pub struct PatientEdge {
    /// Opaque cursor.
    pub cursor: String,
    pub node: Patient,
}

/// A page of patients the viewer may see.
#[derive(SimpleObject)]
pub struct PatientConnection {
    pub edges: Vec<PatientEdge>,
    pub page_info: PageInfo,
    /// How many patients the viewer may see under this filter (never more).
    pub total_count: u64,
}

/// Patients' cursors: `p1:<id>`.
const CURSOR: &str = "p1";

/// Exact-match filters (through blind indexes) for `patients`.
#[derive(InputObject, Default)]
pub struct PatientFilterInput {
    pub family_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub mrn: Option<String>,
    /// ADMIN only; ignored for other roles.
    #[graphql(default = false)]
    pub include_archived: bool,
}

#[derive(Default)]
pub struct PatientQuery;

#[Object]
impl PatientQuery {
    /// One patient. NOT_FOUND both when it does not exist and when you may not see it.
    async fn patient(&self, ctx: &Context<'_>, id: ID) -> Result<Patient> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let (row, scope) = access::read_patient(state, viewer, id).await?;
        let fields = selected(ctx.field());
        audit_read(ctx, read_event(viewer, &scope, &fields)).await?;
        Ok(Patient::new(row, &state.keys, scope))
    }

    /// The patients you may see, filtered and paged (`first` ≤ 100).
    #[graphql(
        // A page costs what one patient's selection costs, `first` times.
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn patients(
        &self,
        ctx: &Context<'_>,
        filter: Option<PatientFilterInput>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<PatientConnection> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let first = page_size(first)?;
        let after = after
            .as_deref()
            .map(|c| decode_cursor::<Uuid>(CURSOR, c))
            .transpose()?;
        let f = filter.unwrap_or_default();
        let filter = PatientFilter {
            family_name: f.family_name,
            birth_date: f.birth_date,
            email: f.email,
            phone: f.phone,
            mrn: f.mrn,
            include_archived: f.include_archived,
        };
        let look = ctx.look_ahead();
        let want_total = look.field("totalCount").exists();
        let node_fields: Vec<&str> = ctx
            .field()
            .selection_set()
            .filter(|f| f.name() == "edges")
            .flat_map(|e| {
                e.selection_set()
                    .filter(|f| f.name() == "node")
                    .flat_map(selected)
                    .collect::<Vec<_>>()
            })
            .collect();
        let page = service::list(state, viewer, &filter, first, after, want_total).await?;
        let rows = access::scopes_for_rows(state, viewer, page.rows).await?;
        let mut edges = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for (row, scope) in rows {
            if !node_fields.is_empty() {
                events.push(read_event(viewer, &scope, &node_fields));
            }
            edges.push(PatientEdge {
                cursor: encode_cursor(CURSOR, row.id),
                node: Patient::new(row, &state.keys, scope),
            });
        }
        audit_reads(ctx, events).await?;
        Ok(PatientConnection {
            page_info: PageInfo::new(
                edges.iter().map(|e| &e.cursor),
                page.has_next,
                after.is_some(),
            ),
            edges,
            total_count: page.total,
        })
    }
}

/// Demographics for a new patient.
#[derive(InputObject)]
pub struct CreatePatientInput {
    /// Generated when omitted.
    pub mrn: Option<String>,
    pub given_name: String,
    pub middle_name: Option<String>,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub sex_at_birth: SexAtBirth,
    pub gender_identity: GenderIdentity,
    /// Required when `genderIdentity` is `OTHER`.
    pub gender_identity_other: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub emergency_contact: Option<EmergencyContact>,
    /// Write-only: stored encrypted, never returned (only `ssnLast4`).
    pub ssn: Option<String>,
    pub preferred_language: Option<String>,
    #[graphql(default = false)]
    pub consent_to_contact: bool,
}

fn gender(g: GenderIdentity, other: Option<String>) -> AppResult<(GenderIdentity, Option<String>)> {
    match (g, other) {
        (GenderIdentity::Other, Some(o)) => Ok((g, Some(parse_gender_other(&o)?))),
        (GenderIdentity::Other, None) => Err(AppError::validation(
            "genderIdentityOther",
            "is required when genderIdentity is OTHER",
        )),
        (_, Some(_)) => Err(AppError::validation(
            "genderIdentityOther",
            "is only allowed with OTHER",
        )),
        (_, None) => Ok((g, None)),
    }
}

impl CreatePatientInput {
    fn parse(self) -> AppResult<NewPatient> {
        let (gender_identity, gender_identity_other) =
            gender(self.gender_identity, self.gender_identity_other)?;
        let non_blank = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        Ok(NewPatient {
            mrn: self.mrn.as_deref().map(parse_mrn).transpose()?,
            given_name: parse_name("givenName", &self.given_name)?,
            middle_name: non_blank(self.middle_name)
                .map(|m| parse_name("middleName", &m))
                .transpose()?,
            family_name: parse_name("familyName", &self.family_name)?,
            birth_date: parse_birth_date(self.birth_date)?,
            sex_at_birth: self.sex_at_birth,
            gender_identity,
            gender_identity_other,
            email: non_blank(self.email).map(|e| parse_email(&e)).transpose()?,
            phone: non_blank(self.phone)
                .map(|p| parse_phone("phone", &p))
                .transpose()?,
            address: self.address.map(Address::parse).transpose()?,
            emergency_contact: self
                .emergency_contact
                .map(EmergencyContact::parse)
                .transpose()?,
            ssn: self.ssn.as_deref().map(parse_ssn).transpose()?,
            preferred_language: non_blank(self.preferred_language)
                .map(|l| parse_language(&l))
                .transpose()?,
            consent_to_contact: self.consent_to_contact,
        })
    }
}

/// Changes to a patient; omitted fields stay as they are, `null` clears optional ones.
#[derive(InputObject, Default)]
pub struct UpdatePatientInput {
    pub given_name: Option<String>,
    pub middle_name: MaybeUndefined<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub sex_at_birth: Option<SexAtBirth>,
    pub gender_identity: Option<GenderIdentity>,
    pub gender_identity_other: Option<String>,
    pub email: MaybeUndefined<String>,
    pub phone: MaybeUndefined<String>,
    pub address: MaybeUndefined<Address>,
    pub emergency_contact: MaybeUndefined<EmergencyContact>,
    pub ssn: MaybeUndefined<String>,
    pub preferred_language: MaybeUndefined<String>,
    pub consent_to_contact: Option<bool>,
}

fn maybe<T, U>(
    m: MaybeUndefined<T>,
    f: impl FnOnce(T) -> AppResult<U>,
) -> AppResult<Option<Option<U>>> {
    match m {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Ok(Some(None)),
        MaybeUndefined::Value(v) => f(v).map(|u| Some(Some(u))),
    }
}

impl UpdatePatientInput {
    fn parse(self) -> AppResult<PatientChanges> {
        let gender_identity = match (self.gender_identity, self.gender_identity_other) {
            (Some(g), other) => Some(gender(g, other)?),
            (None, Some(_)) => {
                return Err(AppError::validation(
                    "genderIdentityOther",
                    "must come with genderIdentity",
                ));
            }
            (None, None) => None,
        };
        Ok(PatientChanges {
            given_name: self
                .given_name
                .map(|n| parse_name("givenName", &n))
                .transpose()?,
            middle_name: maybe(self.middle_name, |m| parse_name("middleName", &m))?,
            family_name: self
                .family_name
                .map(|n| parse_name("familyName", &n))
                .transpose()?,
            birth_date: self.birth_date.map(parse_birth_date).transpose()?,
            sex_at_birth: self.sex_at_birth,
            gender_identity,
            email: maybe(self.email, |e| parse_email(&e))?,
            phone: maybe(self.phone, |p| parse_phone("phone", &p))?,
            address: maybe(self.address, Address::parse)?,
            emergency_contact: maybe(self.emergency_contact, EmergencyContact::parse)?,
            ssn: maybe(self.ssn, |s| parse_ssn(&s))?,
            preferred_language: maybe(self.preferred_language, |l| parse_language(&l))?,
            consent_to_contact: self.consent_to_contact,
        })
    }
}

#[derive(Default)]
pub struct PatientMutation;

#[Object]
impl PatientMutation {
    /// Register a patient (ADMIN, PROVIDER). Repeating the call with the same
    /// `idempotencyKey` and input returns the first result; a different input is CONFLICT.
    async fn create_patient(
        &self,
        ctx: &Context<'_>,
        input: CreatePatientInput,
        idempotency_key: Option<String>,
    ) -> Result<Patient> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        if idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 100)
        {
            return Err(
                AppError::validation("idempotencyKey", "must be 1 to 100 characters").into(),
            );
        }
        let input = input.parse()?;
        let registration = access::registration(viewer)?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let row = service::create(
            &mut tx,
            &state.keys,
            viewer,
            &registration,
            input,
            idempotency_key.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(as_patient(state, viewer, row).await?)
    }

    /// Change demographics. A stale `expectedVersion` is CONFLICT and changes nothing.
    async fn update_patient(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i32,
        input: UpdatePatientInput,
    ) -> Result<Patient> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let changes = input.parse()?;
        // The read establishes visibility (NOT_FOUND) and the viewer's standing, so the
        // write scope below, which break-glass never yields, needs no query of its own.
        let (_, scope) = access::read_patient(state, viewer, id).await?;
        let write = access::demographics_write_scope(
            state,
            viewer,
            id,
            changes.touches_identity(),
            "patient.update",
        )
        .await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let row = service::update(
            &mut tx,
            &state.keys,
            viewer,
            &write,
            expected_version,
            changes,
        )
        .await?;
        tx.commit().await?;
        Ok(Patient::new(row, &state.keys, scope))
    }

    /// Soft-archive a patient (ADMIN), with the reason kept encrypted.
    async fn archive_patient(&self, ctx: &Context<'_>, id: ID, reason: String) -> Result<Patient> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let reason = parse_reason(&reason)?;
        let scope = access::admin_scope(state, viewer, id, "patient.archive").await?;
        if !service::exists(&state.db, id).await? {
            return access::deny(state, viewer, id, "patient.archive", AppError::NotFound)
                .await
                .map_err(Into::into);
        }
        let mut tx = WriteTxn::begin(&state.db).await?;
        let row =
            service::set_archived(&mut tx, &state.keys, viewer, &scope, Some(&reason)).await?;
        tx.commit().await?;
        Ok(as_patient(state, viewer, row).await?)
    }

    /// Bring an archived patient back (ADMIN).
    async fn restore_patient(&self, ctx: &Context<'_>, id: ID) -> Result<Patient> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let scope = access::admin_scope(state, viewer, id, "patient.restore").await?;
        if !service::exists(&state.db, id).await? {
            return access::deny(state, viewer, id, "patient.restore", AppError::NotFound)
                .await
                .map_err(Into::into);
        }
        let mut tx = WriteTxn::begin(&state.db).await?;
        let row = service::set_archived(&mut tx, &state.keys, viewer, &scope, None).await?;
        tx.commit().await?;
        Ok(as_patient(state, viewer, row).await?)
    }
}

/// Who a shared record belongs to: the name and birth date that identify the patient, and
/// nothing else (built only from a share's `PatientScope<Identity>`).
pub struct PatientIdentity {
    row: patients::Model,
    keys: KeyRing,
}

impl PatientIdentity {
    fn open(&self, column: &'static str, ct: &[u8]) -> AppResult<String> {
        self.keys.open_str(
            Slot {
                table: service::TABLE,
                column,
                row: &self.row.id,
            },
            ct,
        )
    }
}

#[Object]
impl PatientIdentity {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    async fn given_name(&self) -> Result<String> {
        Ok(self.open("given_name", &self.row.given_name_enc)?)
    }
    async fn family_name(&self) -> Result<String> {
        Ok(self.open("family_name", &self.row.family_name_enc)?)
    }
    async fn birth_date(&self) -> Result<NaiveDate> {
        Ok(self
            .open("birth_date", &self.row.birth_date_enc)?
            .parse()
            .map_err(|_| AppError::internal_msg("stored birth date is malformed"))?)
    }
}

/// A record a patient shared with you.
#[derive(SimpleObject)]
pub struct SharedRecord {
    pub share_id: ID,
    pub expires_at: DateTime<Utc>,
    pub patient: PatientIdentity,
    pub record: records::MedicalRecord,
}

impl crate::graphql::relay::Node for SharedRecord {
    const NAME: &'static str = "SharedRecord";
}

/// Shared-record cursors: `s1:<share id>`.
const SHARED_CURSOR: &str = "s1";

#[derive(Default)]
pub struct SharedQuery;

#[Object]
impl SharedQuery {
    /// Records patients shared with you (a provider) that have not expired or been revoked,
    /// each with the patient's name and birth date. Every one shown is an audited read.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn shared_with_me(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<SharedRecord>> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let first = page_size(first)?;
        let after = after
            .as_deref()
            .map(|c| decode_cursor::<Uuid>(SHARED_CURSOR, c))
            .transpose()?;
        let (shares, has_next) =
            access::shares::shared_with_me(state, viewer, first, after).await?;
        let ids: Vec<Uuid> = shares.iter().map(|s| s.identity().patient_id()).collect();
        let rows: std::collections::HashMap<Uuid, patients::Model> = patients::Entity::find()
            .filter(patients::Column::Id.is_in(ids))
            .filter(patients::Column::ArchivedAt.is_null())
            .all(&state.db)
            .await
            .map_err(AppError::from)?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let mut edges = Vec::with_capacity(shares.len());
        let mut events = Vec::with_capacity(shares.len());
        for share in shares {
            let identity = share.identity();
            let Some(row) = rows.get(&identity.patient_id()) else {
                continue;
            };
            let record = crate::records::shares::shared_record(state, &share).await?;
            events.push(
                AuditEvent::by(viewer, "record.read", "medical_record")
                    .scope(&share)
                    .resource(share.record_id().to_string())
                    .detail(serde_json::json!({
                        "basis": crate::access::history::SHARE_BASIS,
                        "via": "sharedWithMe",
                    })),
            );
            edges.push(crate::graphql::relay::Edge {
                cursor: encode_cursor(SHARED_CURSOR, share.share_id()),
                node: SharedRecord {
                    share_id: ID(share.share_id().to_string()),
                    expires_at: share.expires_at(),
                    patient: PatientIdentity {
                        row: row.clone(),
                        keys: state.keys.clone(),
                    },
                    record,
                },
            });
        }
        audit_reads(ctx, events).await?;
        Ok(Connection {
            page_info: PageInfo::new(edges.iter().map(|e| &e.cursor), has_next, after.is_some()),
            total_count: edges.len() as u64,
            edges,
        })
    }
}
