//! The demo org: six objects with realistic field types, rows generated on demand from
//! (seed, object, row, version), so a million rows cost no memory until they are read, and the same
//! seed always gives the same org. Mutations (inserts, updates, deletes) are recorded as per-row
//! overrides and can be replayed from their timestamps.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// SplitMix64: tiny, fast and fixed forever, so a seed gives the same org in every version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(parts: &[u64]) -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for part in parts {
            state = mix(state ^ part.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        }
        Self(state)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------------
// Schema

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    Id,
    IsDeleted,
    CreatedDate,
    LastModifiedDate,
    SystemModstamp,
    /// A reference to a row of the object with this key prefix (its count is the org's rows).
    Ref(&'static str),
    Owner,
    Company,
    FirstName,
    LastName,
    FullName,
    Email,
    Phone,
    Url,
    Street,
    City,
    State,
    Postal,
    Country,
    Latitude,
    Longitude,
    Picklist(&'static [&'static str]),
    Currency(u64),
    Percent,
    Int(u64),
    Bool,
    Date,
    Sentence,
    /// Multi-line text with quotes and commas: the CSV edge cases real orgs have.
    Paragraph,
    Base64,
    AutoNumber(&'static str),
    /// Amount × Probability / 100 of the same row.
    ExpectedRevenue,
    /// A compound address (components are separate fields).
    Address(&'static str),
    /// A text field created at this instant (epoch ms): null on every row last modified before.
    AddedAt(i64),
    /// A cross-object formula: `field` of the `object` row that this row's `reference` points
    /// to. It changes when that row changes, without a new SystemModstamp on this one.
    Lookup {
        reference: &'static str,
        object: &'static str,
        field: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: &'static str,
    pub sf_type: &'static str,
    pub length: u32,
    pub precision: u32,
    pub scale: u32,
    pub calculated: bool,
    /// A formula field's formula (describe's `calculatedFormula`).
    pub formula: Option<&'static str>,
    pub compound_field_name: Option<&'static str>,
    pub nillable: bool,
    pub custom: bool,
    pub generator: Gen,
    /// Kept from the row's first version when the row is updated.
    pub immutable: bool,
    /// Deleted by an admin: absent from describe and queries, but its position (which seeds the
    /// other fields' values) is kept.
    pub hidden: bool,
}

#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub name: &'static str,
    pub label: &'static str,
    pub key_prefix: &'static str,
    pub custom: bool,
    pub fields: Vec<FieldDef>,
    /// Rows are only ever inserted (a field history object): no update or delete touches them,
    /// and they have no SystemModstamp or LastModifiedDate, only CreatedDate.
    pub append_only: bool,
}

impl ObjectDef {
    pub fn field(&self, name: &str) -> Option<(usize, &FieldDef)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| !f.hidden && f.name.eq_ignore_ascii_case(name))
    }

    /// The fields an admin has not deleted, with their positions.
    pub fn visible_fields(&self) -> impl Iterator<Item = (usize, &FieldDef)> {
        self.fields.iter().enumerate().filter(|(_, f)| !f.hidden)
    }
}

fn field(name: &'static str, sf_type: &'static str, generator: Gen) -> FieldDef {
    let (length, precision, scale) = match sf_type {
        "id" | "reference" => (18, 0, 0),
        "string" | "email" | "phone" | "url" => (255, 0, 0),
        "picklist" => (255, 0, 0),
        "textarea" => (32000, 0, 0),
        "currency" => (0, 18, 2),
        "percent" => (0, 5, 2),
        "double" => (0, 18, 15),
        "int" => (0, 9, 0),
        "base64" => (0, 0, 0),
        _ => (0, 0, 0),
    };
    FieldDef {
        name,
        sf_type,
        length,
        precision,
        scale,
        calculated: false,
        formula: None,
        compound_field_name: None,
        nillable: !matches!(
            generator,
            Gen::Id | Gen::IsDeleted | Gen::CreatedDate | Gen::SystemModstamp
        ),
        custom: name.ends_with("__c"),
        generator,
        immutable: matches!(generator, Gen::Id | Gen::CreatedDate | Gen::AutoNumber(_)),
        hidden: false,
    }
}

fn component(
    name: &'static str,
    sf_type: &'static str,
    generator: Gen,
    compound: &'static str,
) -> FieldDef {
    FieldDef {
        compound_field_name: Some(compound),
        ..field(name, sf_type, generator)
    }
}

fn address(prefix: &'static str, compound: &'static str) -> Vec<FieldDef> {
    // Component names are the prefix plus a suffix; leaking the concatenation is fine: these are
    // a fixed handful per process.
    let name =
        |suffix: &str| -> &'static str { Box::leak(format!("{prefix}{suffix}").into_boxed_str()) };
    vec![
        component(name("Street"), "textarea", Gen::Street, compound),
        component(name("City"), "string", Gen::City, compound),
        component(name("State"), "string", Gen::State, compound),
        component(name("PostalCode"), "string", Gen::Postal, compound),
        component(name("Country"), "string", Gen::Country, compound),
        component(name("Latitude"), "double", Gen::Latitude, compound),
        component(name("Longitude"), "double", Gen::Longitude, compound),
        FieldDef {
            length: 0,
            ..field(compound, "address", Gen::Address(prefix))
        },
    ]
}

/// A wide custom object for benchmarks: 50 fields of every common type, none compound.
pub fn bench_object() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        field("Name", "string", Gen::Company),
        field("Account__c", "reference", Gen::Ref("001")),
        field("Contact__c", "reference", Gen::Ref("003")),
        field("Title__c", "string", Gen::Sentence),
        field("Subtitle__c", "string", Gen::Sentence),
        field("Customer__c", "string", Gen::FullName),
        field("First__c", "string", Gen::FirstName),
        field("Last__c", "string", Gen::LastName),
        field("City__c", "string", Gen::City),
        field("State__c", "string", Gen::State),
        field("Country__c", "string", Gen::Country),
        field("Email__c", "email", Gen::Email),
        field("Phone__c", "phone", Gen::Phone),
        field("Website__c", "url", Gen::Url),
        field("Industry__c", "picklist", Gen::Picklist(INDUSTRIES)),
        field("Stage__c", "picklist", Gen::Picklist(STAGES)),
        field("Status__c", "picklist", Gen::Picklist(INVOICE_STATUS)),
        field("Priority__c", "picklist", Gen::Picklist(PRIORITIES)),
        field("Rating__c", "picklist", Gen::Picklist(RATINGS)),
        field("Source__c", "picklist", Gen::Picklist(LEAD_SOURCES)),
        field("Amount__c", "currency", Gen::Currency(2_000_000)),
        field("Cost__c", "currency", Gen::Currency(1_000_000)),
        field("Tax__c", "currency", Gen::Currency(100_000)),
        field("Discount__c", "currency", Gen::Currency(50_000)),
        field("Margin__c", "currency", Gen::Currency(500_000)),
        field("Budget__c", "currency", Gen::Currency(5_000_000)),
        field("Probability__c", "percent", Gen::Percent),
        field("Share__c", "percent", Gen::Percent),
        field("Growth__c", "percent", Gen::Percent),
        field("Churn__c", "percent", Gen::Percent),
        field("Quantity__c", "int", Gen::Int(10_000)),
        field("Seats__c", "int", Gen::Int(5_000)),
        field("Employees__c", "int", Gen::Int(250_000)),
        field("Score__c", "int", Gen::Int(100)),
        field("Visits__c", "int", Gen::Int(1_000_000)),
        field("Active__c", "boolean", Gen::Bool),
        field("Verified__c", "boolean", Gen::Bool),
        field("Strategic__c", "boolean", Gen::Bool),
        field("Start__c", "date", Gen::Date),
        field("End__c", "date", Gen::Date),
        field("Renewal__c", "date", Gen::Date),
        field("Notes__c", "textarea", Gen::Paragraph),
        field("Summary__c", "textarea", Gen::Paragraph),
        field("Number__c", "string", Gen::AutoNumber("B-")),
    ]);
    ObjectDef {
        name: "Bench__c",
        label: "Bench",
        key_prefix: "a0B",
        custom: true,
        fields,
        append_only: false,
    }
}

/// `AccountHistory`, as field history tracking makes it: one row per tracked change, never
/// updated, with CreatedDate as its only timestamp (no SystemModstamp, no LastModifiedDate).
pub fn history_object() -> ObjectDef {
    let fields = vec![
        field("Id", "id", Gen::Id),
        field("IsDeleted", "boolean", Gen::IsDeleted),
        field("AccountId", "reference", Gen::Ref("001")),
        field("CreatedById", "reference", Gen::Owner),
        field("CreatedDate", "datetime", Gen::CreatedDate),
        field("Field", "picklist", Gen::Picklist(TRACKED_FIELDS)),
        field(
            "DataType",
            "picklist",
            Gen::Picklist(&["Text", "Picklist", "Currency"]),
        ),
        field("OldValue", "anyType", Gen::Sentence),
        field("NewValue", "anyType", Gen::Sentence),
    ];
    ObjectDef {
        name: "AccountHistory",
        label: "Account History",
        key_prefix: "017",
        custom: false,
        fields,
        append_only: true,
    }
}

const TRACKED_FIELDS: &[&str] = &[
    "Name",
    "Type",
    "Industry",
    "Rating",
    "AnnualRevenue",
    "Phone",
];

fn system_fields() -> Vec<FieldDef> {
    vec![
        field("Id", "id", Gen::Id),
        field("IsDeleted", "boolean", Gen::IsDeleted),
        field("OwnerId", "reference", Gen::Owner),
        field("CreatedDate", "datetime", Gen::CreatedDate),
        field("LastModifiedDate", "datetime", Gen::LastModifiedDate),
        field("SystemModstamp", "datetime", Gen::SystemModstamp),
    ]
}

const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Banking",
    "Chemicals",
    "Education",
    "Energy",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Technology",
    "Transportation",
];
const ACCOUNT_TYPES: &[&str] = &[
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Partner",
    "Other",
];
const RATINGS: &[&str] = &["Hot", "Warm", "Cold"];
const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
const LEAD_STATUS: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];
const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
const CASE_STATUS: &[&str] = &["New", "Working", "Escalated", "Closed"];
const PRIORITIES: &[&str] = &["High", "Medium", "Low"];
const INVOICE_STATUS: &[&str] = &["Draft", "Sent", "Paid", "Void"];

/// The six objects of the demo org.
pub fn demo_objects() -> Vec<ObjectDef> {
    let mut account = system_fields();
    account.extend([
        field("Name", "string", Gen::Company),
        field("Type", "picklist", Gen::Picklist(ACCOUNT_TYPES)),
        field("ParentId", "reference", Gen::Ref("001")),
        field("Phone", "phone", Gen::Phone),
        field("Website", "url", Gen::Url),
        field("Industry", "picklist", Gen::Picklist(INDUSTRIES)),
        field("Rating", "picklist", Gen::Picklist(RATINGS)),
        field("AnnualRevenue", "currency", Gen::Currency(500_000_000)),
        field("NumberOfEmployees", "int", Gen::Int(250_000)),
        field("Description", "textarea", Gen::Paragraph),
    ]);
    account.extend(address("Billing", "BillingAddress"));
    account.extend(address("Shipping", "ShippingAddress"));
    account.push(field("Active__c", "boolean", Gen::Bool));
    account.push(field("SLAExpirationDate__c", "date", Gen::Date));

    let mut contact = system_fields();
    contact.extend([
        field("AccountId", "reference", Gen::Ref("001")),
        field("FirstName", "string", Gen::FirstName),
        field("LastName", "string", Gen::LastName),
        field("Email", "email", Gen::Email),
        field("Phone", "phone", Gen::Phone),
        field("Title", "string", Gen::Sentence),
        field("Birthdate", "date", Gen::Date),
        field("HasOptedOutOfEmail", "boolean", Gen::Bool),
        field("Description", "textarea", Gen::Paragraph),
    ]);
    contact.extend(address("Mailing", "MailingAddress"));

    let mut opportunity = system_fields();
    opportunity.extend([
        field("AccountId", "reference", Gen::Ref("001")),
        field("Name", "string", Gen::Sentence),
        field("StageName", "picklist", Gen::Picklist(STAGES)),
        field("Amount", "currency", Gen::Currency(2_000_000)),
        field("Probability", "percent", Gen::Percent),
        FieldDef {
            calculated: true,
            formula: Some("Amount * Probability / 100"),
            ..field("ExpectedRevenue", "currency", Gen::ExpectedRevenue)
        },
        field("CloseDate", "date", Gen::Date),
        field("IsWon", "boolean", Gen::Bool),
        field("LeadSource", "picklist", Gen::Picklist(LEAD_SOURCES)),
        field("Description", "textarea", Gen::Paragraph),
    ]);

    let mut lead = system_fields();
    lead.extend([
        field("FirstName", "string", Gen::FirstName),
        field("LastName", "string", Gen::LastName),
        field("Company", "string", Gen::Company),
        field("Email", "email", Gen::Email),
        field("Status", "picklist", Gen::Picklist(LEAD_STATUS)),
        field("LeadSource", "picklist", Gen::Picklist(LEAD_SOURCES)),
        field("NumberOfEmployees", "int", Gen::Int(50_000)),
        field("AnnualRevenue", "currency", Gen::Currency(100_000_000)),
    ]);
    lead.extend(address("", "Address"));

    let mut case = system_fields();
    case.extend([
        field("CaseNumber", "string", Gen::AutoNumber("")),
        field("AccountId", "reference", Gen::Ref("001")),
        field("ContactId", "reference", Gen::Ref("003")),
        field("Subject", "string", Gen::Sentence),
        field("Description", "textarea", Gen::Paragraph),
        field("Status", "picklist", Gen::Picklist(CASE_STATUS)),
        field("Priority", "picklist", Gen::Picklist(PRIORITIES)),
        field("IsClosed", "boolean", Gen::Bool),
        field("IsEscalated", "boolean", Gen::Bool),
    ]);

    let mut invoice = system_fields();
    invoice.extend([
        field("Name", "string", Gen::AutoNumber("INV-")),
        field("Account__c", "reference", Gen::Ref("001")),
        field("Opportunity__c", "reference", Gen::Ref("006")),
        field("Amount__c", "currency", Gen::Currency(250_000)),
        field("Tax_Rate__c", "percent", Gen::Percent),
        field("Due_Date__c", "date", Gen::Date),
        field("Paid__c", "boolean", Gen::Bool),
        field("Status__c", "picklist", Gen::Picklist(INVOICE_STATUS)),
        field("Line_Count__c", "double", Gen::Int(40)),
        field("Notes__c", "textarea", Gen::Paragraph),
        // Real custom objects cannot have base64 fields; this one exists to exercise the rule
        // that Bulk queries leave base64 out.
        field("Scan__c", "base64", Gen::Base64),
    ]);

    vec![
        ObjectDef {
            name: "Account",
            label: "Account",
            key_prefix: "001",
            custom: false,
            fields: account,
            append_only: false,
        },
        ObjectDef {
            name: "Contact",
            label: "Contact",
            key_prefix: "003",
            custom: false,
            fields: contact,
            append_only: false,
        },
        ObjectDef {
            name: "Opportunity",
            label: "Opportunity",
            key_prefix: "006",
            custom: false,
            fields: opportunity,
            append_only: false,
        },
        ObjectDef {
            name: "Lead",
            label: "Lead",
            key_prefix: "00Q",
            custom: false,
            fields: lead,
            append_only: false,
        },
        ObjectDef {
            name: "Case",
            label: "Case",
            key_prefix: "500",
            custom: false,
            fields: case,
            append_only: false,
        },
        ObjectDef {
            name: "Invoice__c",
            label: "Invoice",
            key_prefix: "a01",
            custom: true,
            fields: invoice,
            append_only: false,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Ids

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An 18-character Salesforce id: key prefix, a 12-character body, and the case-safe suffix.
pub fn salesforce_id(prefix: &str, index: u64) -> String {
    let mut body = [b'0'; 12];
    let mut n = index;
    for slot in body.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id15 = String::with_capacity(18);
    id15.push_str(prefix);
    id15.push_str(std::str::from_utf8(&body).unwrap_or("000000000000"));
    let bytes = id15.as_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut suffix = String::with_capacity(3);
    for chunk in 0..3 {
        let mut bits = 0usize;
        for i in 0..5 {
            if bytes[chunk * 5 + i].is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        suffix.push(alphabet[bits] as char);
    }
    id15 + &suffix
}

/// The row index of an id this org made, if it belongs to `prefix`.
pub fn index_of_id(prefix: &str, id: &str) -> Option<u64> {
    if id.len() != 18 || !id.starts_with(prefix) {
        return None;
    }
    let mut n = 0u64;
    for c in id[3..15].bytes() {
        let digit = BASE62.iter().position(|&b| b == c)? as u64;
        n = n.checked_mul(62)?.checked_add(digit)?;
    }
    (salesforce_id(prefix, n) == id).then_some(n)
}

// ---------------------------------------------------------------------------------------------
// Rows

/// The base timestamp the generated history ends at; base rows were last modified in the two
/// years before it.
pub fn history_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

const HISTORY_MS: i64 = 730 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowState {
    pub version: u32,
    pub deleted: bool,
    /// SystemModstamp, in milliseconds since the epoch.
    pub modstamp_ms: i64,
    pub created_ms: i64,
    /// Hard-deleted (purged from the recycle bin, or deleted without it): the row is gone from
    /// every query, queryAll too. `deleted` is set as well.
    #[serde(default)]
    pub purged: bool,
}

/// One object's rows: `count` rows; the ones a mutation touched have an override.
#[derive(Debug, Clone)]
pub struct ObjectRows {
    pub count: u64,
    pub overrides: HashMap<u64, RowState>,
}

/// The org's data: what a seed, a size and a list of mutation rounds make.
#[derive(Debug, Clone)]
pub struct Org {
    pub seed: u64,
    pub rows: u64,
    pub objects: Vec<ObjectDef>,
    pub data: Vec<ObjectRows>,
    /// When each mutation round happened.
    pub rounds: Vec<DateTime<Utc>>,
    /// Whether mutation rounds also hard-delete rows (about 0.25% per object and round).
    pub hard_deletes: bool,
}

/// What a mutation round changed, per object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Hard-deleted: gone from every query, without a trace.
    #[serde(default)]
    pub purged: u64,
}

pub const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

pub fn format_datetime_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format(DATETIME_FORMAT)
        .to_string()
}

impl Org {
    /// The org for `seed` with `rows` rows per object, before any mutation.
    pub fn generate(seed: u64, rows: u64) -> Self {
        let objects = demo_objects();
        let data = objects
            .iter()
            .map(|_| ObjectRows {
                count: rows,
                overrides: HashMap::new(),
            })
            .collect();
        Self {
            seed,
            rows,
            objects,
            data,
            rounds: Vec::new(),
            hard_deletes: false,
        }
    }

    /// The org after replaying the given mutation rounds.
    pub fn replay(seed: u64, rows: u64, rounds: &[DateTime<Utc>]) -> Self {
        let mut org = Self::generate(seed, rows);
        for at in rounds {
            org.mutate(*at);
        }
        org
    }

    pub fn object(&self, name: &str) -> Option<(usize, &ObjectDef)> {
        self.objects
            .iter()
            .enumerate()
            .find(|(_, o)| o.name.eq_ignore_ascii_case(name))
    }

    fn object_salt(&self, object: usize) -> u64 {
        name_hash(self.objects[object].name)
    }

    /// The state of a row: its override, or the base state derived from the seed.
    pub fn row_state(&self, object: usize, index: u64) -> RowState {
        if let Some(state) = self.data[object].overrides.get(&index) {
            return *state;
        }
        let mut rng = Rng::new(&[self.seed, self.object_salt(object), index, 0xBA5E]);
        let modstamp_ms =
            history_end().timestamp_millis() - 1 - rng.below(HISTORY_MS as u64) as i64;
        let created_ms = modstamp_ms - rng.below(HISTORY_MS as u64 / 2) as i64;
        // History rows are never deleted on their own.
        let deleted = rng.chance(20) && !self.objects[object].append_only;
        RowState {
            version: 0,
            deleted,
            modstamp_ms,
            created_ms,
            purged: false,
        }
    }

    /// Every field of a row as Bulk CSV text (`None` for null; compound fields are `None`).
    pub fn row_values(&self, object: usize, index: u64) -> Vec<Option<String>> {
        let state = self.row_state(object, index);
        let def = &self.objects[object];
        let salt = self.object_salt(object);
        let mut values: Vec<Option<String>> = Vec::with_capacity(def.fields.len());
        for (position, field) in def.fields.iter().enumerate() {
            let version = if field.immutable { 0 } else { state.version };
            let mut rng = Rng::new(&[self.seed, salt, index, position as u64, version as u64]);
            let value = self.generate_value(field, &mut rng, object, index, &state, &values, def);
            values.push(value);
        }
        values
    }

    #[allow(clippy::too_many_arguments)]
    fn generate_value(
        &self,
        field: &FieldDef,
        rng: &mut Rng,
        object: usize,
        index: u64,
        state: &RowState,
        earlier: &[Option<String>],
        def: &ObjectDef,
    ) -> Option<String> {
        // Optional fields are null now and then, as in real data.
        if field.nillable
            && !matches!(
                field.generator,
                Gen::Bool
                    | Gen::Address(_)
                    | Gen::ExpectedRevenue
                    | Gen::Lookup { .. }
                    | Gen::LastModifiedDate
                    | Gen::AutoNumber(_)
                    | Gen::Owner
            )
            && rng.chance(60)
        {
            return None;
        }
        let value = match field.generator {
            Gen::AddedAt(created_ms) if state.modstamp_ms < created_ms => return None,
            Gen::AddedAt(_) => format!("Added {}", rng.pick(WORDS)),
            Gen::Id => salesforce_id(def.key_prefix, index),
            Gen::IsDeleted => state.deleted.to_string(),
            Gen::CreatedDate => format_datetime_ms(state.created_ms),
            Gen::LastModifiedDate => format_datetime_ms(state.modstamp_ms - rng.below(2000) as i64),
            Gen::SystemModstamp => format_datetime_ms(state.modstamp_ms),
            Gen::Ref(prefix) => {
                // Drawn from the base rows, so inserts elsewhere never change this row.
                let _ = object;
                salesforce_id(prefix, rng.below(self.rows.max(1)))
            }
            Gen::Owner => salesforce_id("005", rng.below(25)),
            Gen::Company => format!("{} {}", rng.pick(COMPANY_WORDS), rng.pick(COMPANY_SUFFIXES)),
            Gen::FirstName => rng.pick(FIRST_NAMES).to_string(),
            Gen::LastName => rng.pick(LAST_NAMES).to_string(),
            Gen::FullName => format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
            Gen::Email => format!(
                "{}.{}{}@example.com",
                rng.pick(FIRST_NAMES).to_lowercase(),
                rng.pick(LAST_NAMES).to_lowercase().replace('\'', ""),
                rng.below(1000)
            ),
            Gen::Phone => format!("(555) {:03}-{:04}", rng.below(1000), rng.below(10000)),
            Gen::Url => format!(
                "https://www.{}.example.com",
                rng.pick(COMPANY_WORDS).to_lowercase()
            ),
            Gen::Street => {
                let number = rng.below(9999) + 1;
                let street = rng.pick(STREETS);
                if rng.chance(200) {
                    format!("{number} {street}\nSuite {}", rng.below(900) + 100)
                } else {
                    format!("{number} {street}")
                }
            }
            Gen::City => rng.pick(CITIES).to_string(),
            Gen::State => rng.pick(STATES).to_string(),
            Gen::Postal => format!("{:05}", rng.below(99999)),
            Gen::Country => rng.pick(COUNTRIES).to_string(),
            Gen::Latitude => format!("{:.6}", rng.below(180_000_000) as f64 / 1e6 - 90.0),
            Gen::Longitude => format!("{:.6}", rng.below(360_000_000) as f64 / 1e6 - 180.0),
            Gen::Picklist(values) => rng.pick(values).to_string(),
            Gen::Currency(max) => format!("{:.2}", rng.below(max * 100) as f64 / 100.0),
            Gen::Percent => (rng.below(21) * 5).to_string(),
            Gen::Int(max) => rng.below(max).to_string(),
            Gen::Bool => rng.chance(500).to_string(),
            Gen::Date => {
                let day =
                    history_end() - Duration::days(rng.below(1500) as i64) + Duration::days(365);
                day.format("%Y-%m-%d").to_string()
            }
            Gen::Sentence => {
                let words = 2 + rng.below(4);
                (0..words)
                    .map(|_| rng.pick(WORDS))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Gen::Paragraph => paragraph(rng),
            Gen::Base64 => {
                use base64::Engine;
                let bytes: Vec<u8> = (0..24).map(|_| rng.next_u64() as u8).collect();
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
            Gen::AutoNumber(prefix) => format!("{prefix}{:08}", index + 1),
            Gen::ExpectedRevenue => {
                let amount = def
                    .field("Amount")
                    .and_then(|(i, _)| earlier.get(i).cloned().flatten());
                let probability = def
                    .field("Probability")
                    .and_then(|(i, _)| earlier.get(i).cloned().flatten());
                match (amount, probability) {
                    (Some(a), Some(p)) => {
                        let a: f64 = a.parse().unwrap_or(0.0);
                        let p: f64 = p.parse().unwrap_or(0.0);
                        format!("{:.2}", (a * p / 100.0 * 100.0).round() / 100.0)
                    }
                    _ => return None,
                }
            }
            Gen::Address(_) => return None,
            Gen::Lookup {
                reference,
                object: target,
                field: target_field,
            } => {
                let id = def
                    .field(reference)
                    .and_then(|(i, _)| earlier.get(i).cloned().flatten())?;
                let (target_index, target_def) = self.object(target)?;
                let row = index_of_id(target_def.key_prefix, &id)
                    .filter(|&row| row < self.data[target_index].count)?;
                let (position, _) = target_def.field(target_field)?;
                return self
                    .row_values(target_index, row)
                    .get(position)
                    .cloned()
                    .flatten();
            }
        };
        Some(value)
    }

    /// Contact gets `Account_Rating__c`, a formula showing its account's Rating: when an account
    /// changes, its contacts' formula values change while their SystemModstamp stays.
    pub fn add_cross_object_formula(&mut self) {
        let Some((index, def)) = self.object("Contact") else {
            return;
        };
        if def.field("Account_Rating__c").is_some() {
            return;
        }
        let lookup = Gen::Lookup {
            reference: "AccountId",
            object: "Account",
            field: "Rating",
        };
        self.objects[index].fields.push(FieldDef {
            calculated: true,
            formula: Some("Account.Rating"),
            ..field("Account_Rating__c", "string", lookup)
        });
    }

    /// Applies one mutation round at `at`: about 1% inserts, 2% updates and 0.5% deletes per
    /// object (at least one of each). Deterministic for (seed, round number).
    pub fn mutate(&mut self, at: DateTime<Utc>) -> Vec<(String, MutationCounts)> {
        let round = self.rounds.len() as u64 + 1;
        self.rounds.push(at);
        let stamp = at.timestamp_millis();
        let mut report = Vec::new();
        for object in 0..self.objects.len() {
            let salt = self.object_salt(object);
            let mut rng = Rng::new(&[self.seed, salt, round, 0x5EED]);
            let count = self.data[object].count;
            let mut counts = MutationCounts::default();
            let append_only = self.objects[object].append_only;
            let updates = if append_only { 0 } else { (count / 50).max(1) };
            for _ in 0..updates {
                let index = rng.below(count);
                let mut state = self.row_state(object, index);
                if state.deleted {
                    continue;
                }
                state.version += 1;
                state.modstamp_ms = stamp;
                self.data[object].overrides.insert(index, state);
                counts.updated += 1;
            }
            let deletes = if append_only { 0 } else { (count / 200).max(1) };
            for _ in 0..deletes {
                let index = rng.below(count);
                let mut state = self.row_state(object, index);
                if state.deleted {
                    continue;
                }
                state.deleted = true;
                state.modstamp_ms = stamp;
                self.data[object].overrides.insert(index, state);
                counts.deleted += 1;
            }
            let purges = if self.hard_deletes && !append_only {
                (count / 400).max(1)
            } else {
                0
            };
            for _ in 0..purges {
                let index = rng.below(count);
                if self.purge(object, index) {
                    counts.purged += 1;
                }
            }
            let inserts = (count / 100).max(1);
            for _ in 0..inserts {
                let index = self.data[object].count;
                self.data[object].count += 1;
                self.data[object].overrides.insert(
                    index,
                    RowState {
                        version: 0,
                        deleted: false,
                        modstamp_ms: stamp,
                        created_ms: stamp,
                        purged: false,
                    },
                );
                counts.inserted += 1;
            }
            report.push((self.objects[object].name.to_string(), counts));
        }
        report
    }

    /// A custom text field appears on the object at `at`, as an admin adds one: rows modified
    /// before stay null. Returns false for an unknown object or a field it already has.
    pub fn add_field(&mut self, object: &str, name: &'static str, at: DateTime<Utc>) -> bool {
        let Some((index, def)) = self.object(object) else {
            return false;
        };
        if def.field(name).is_some() {
            return false;
        }
        self.objects[index]
            .fields
            .push(field(name, "string", Gen::AddedAt(at.timestamp_millis())));
        true
    }

    /// Adds an object with the org's row count (the benchmark's wide object).
    pub fn add_object(&mut self, def: ObjectDef) {
        if self.object(def.name).is_none() {
            self.objects.push(def);
            self.data.push(ObjectRows {
                count: self.rows,
                overrides: HashMap::new(),
            });
        }
    }

    /// A field disappears from the object, as when an admin deletes it; queries naming it fail
    /// with INVALID_FIELD. Returns false for an unknown object or field.
    pub fn remove_field(&mut self, object: &str, name: &str) -> bool {
        let Some((index, def)) = self.object(object) else {
            return false;
        };
        let Some((position, _)) = def.field(name) else {
            return false;
        };
        self.objects[index].fields[position].hidden = true;
        true
    }

    /// Hard-deletes a row, live or in the recycle bin: it vanishes from every query, queryAll
    /// too, and its SystemModstamp does not move (nothing is left to stamp). False if the row
    /// does not exist or is gone already.
    pub fn purge(&mut self, object: usize, index: u64) -> bool {
        if index >= self.data[object].count {
            return false;
        }
        let mut state = self.row_state(object, index);
        if state.purged {
            return false;
        }
        state.deleted = true;
        state.purged = true;
        self.data[object].overrides.insert(index, state);
        true
    }

    /// Rows not deleted.
    pub fn live_count(&self, object: usize) -> u64 {
        (0..self.data[object].count)
            .filter(|&i| !self.row_state(object, i).deleted)
            .count() as u64
    }
}

fn paragraph(rng: &mut Rng) -> String {
    let sentences = 1 + rng.below(3);
    let mut text = String::new();
    for s in 0..sentences {
        if s > 0 {
            text.push_str(if rng.chance(300) { "\n" } else { " " });
        }
        let words = 4 + rng.below(10);
        let sentence: Vec<&str> = (0..words).map(|_| rng.pick(WORDS)).collect();
        let mut sentence = sentence.join(" ");
        if rng.chance(150) {
            sentence = format!("\"{sentence}\", they said");
        }
        if rng.chance(100) {
            sentence.push_str(", naïve café façade — ünïcödé");
        }
        text.push_str(&sentence);
        text.push('.');
    }
    text
}

const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Hooli",
    "Vehement",
    "Massive",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Aperture",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Dunder",
    "Pied Piper",
    "Blue Sun",
];
const COMPANY_SUFFIXES: &[&str] = &[
    "Inc.",
    "LLC",
    "Ltd",
    "GmbH",
    "Corp.",
    "& Sons",
    "Group",
    "Holdings",
    "S.A.",
    "Partners, LLP",
];
const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Niklaus",
    "Sophie",
    "José",
    "Zoë",
    "Ólafur",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "Wirth",
    "Wilson",
    "García",
    "O'Neil",
    "Müller",
];
const STREETS: &[&str] = &[
    "Main St",
    "Market Street",
    "Broadway",
    "Elm Avenue",
    "Mission St",
    "Oak Lane",
    "Pine Road",
    "1st Ave",
    "Sunset Blvd",
    "Harbour Way",
];
const CITIES: &[&str] = &[
    "San Francisco",
    "New York",
    "Austin",
    "Chicago",
    "Seattle",
    "London",
    "Paris",
    "Berlin",
    "Tokyo",
    "São Paulo",
    "Zürich",
    "Montréal",
];
const STATES: &[&str] = &["CA", "NY", "TX", "IL", "WA", "MA", "CO", "GA", "OR", "FL"];
const COUNTRIES: &[&str] = &[
    "United States",
    "United Kingdom",
    "France",
    "Germany",
    "Japan",
    "Brazil",
    "Switzerland",
    "Canada",
];
const WORDS: &[&str] = &[
    "quarterly",
    "renewal",
    "pipeline",
    "enterprise",
    "platform",
    "migration",
    "support",
    "contract",
    "upgrade",
    "license",
    "integration",
    "rollout",
    "pilot",
    "expansion",
    "onboarding",
    "escalation",
    "invoice",
    "shipment",
    "warehouse",
    "forecast",
    "budget",
    "review",
    "priority",
    "customer",
    "partner",
    "regional",
    "global",
    "annual",
    "strategic",
    "follow-up",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_18_characters_and_round_trip() {
        for index in [0u64, 1, 61, 62, 123_456_789] {
            let id = salesforce_id("001", index);
            assert_eq!(id.len(), 18);
            assert_eq!(index_of_id("001", &id), Some(index));
        }
        assert_eq!(index_of_id("003", &salesforce_id("001", 5)), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_org_and_another_seed_another() {
        let a = Org::generate(7, 100);
        let b = Org::generate(7, 100);
        let c = Org::generate(8, 100);
        assert_eq!(a.row_values(0, 42), b.row_values(0, 42));
        assert_ne!(a.row_values(0, 42), c.row_values(0, 42));
    }

    #[test]
    fn mutations_replay_exactly() {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let mut live = Org::generate(3, 500);
        let report = live.mutate(at);
        let replayed = Org::replay(3, 500, &[at]);
        for (object, (_, counts)) in report.iter().enumerate() {
            assert_eq!(live.data[object].count, replayed.data[object].count);
            assert_eq!(live.data[object].count, 500 + counts.inserted);
            for index in 0..live.data[object].count {
                assert_eq!(
                    live.row_values(object, index),
                    replayed.row_values(object, index)
                );
            }
        }
        assert!(
            report
                .iter()
                .all(|(_, c)| c.updated > 0 && c.deleted > 0 && c.inserted > 0)
        );
    }

    #[test]
    fn some_base_rows_are_soft_deleted() {
        let org = Org::generate(1, 2000);
        let live = org.live_count(0);
        assert!(live < 2000 && live > 1900, "{live}");
    }
}
