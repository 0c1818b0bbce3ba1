//! The objects of the demo org and their fields: what each field is, and how its values are
//! generated.

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

pub(super) fn field(name: &'static str, sf_type: &'static str, generator: Gen) -> FieldDef {
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
        // As a real org's describe says: system fields, the owner, checkboxes and auto-numbers
        // are never null; the objects' required fields are marked with [`required`].
        nillable: !matches!(
            generator,
            Gen::Id
                | Gen::IsDeleted
                | Gen::CreatedDate
                | Gen::LastModifiedDate
                | Gen::SystemModstamp
                | Gen::Owner
                | Gen::AutoNumber(_)
        ) && sf_type != "boolean",
        custom: name.ends_with("__c"),
        generator,
        immutable: matches!(generator, Gen::Id | Gen::CreatedDate | Gen::AutoNumber(_)),
        hidden: false,
    }
}

/// A field the org requires (a custom object's Name, Contact's LastName, ...): not nillable in
/// its describe, and never null in its rows.
pub(super) fn required(field: FieldDef) -> FieldDef {
    FieldDef {
        nillable: false,
        ..field
    }
}

pub(super) fn component(
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

pub(super) fn address(prefix: &'static str, compound: &'static str) -> Vec<FieldDef> {
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
        required(field("Name", "string", Gen::Company)),
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

/// The `n`th of many small custom objects (`Extra000__c`, `Extra001__c`, ...), for orgs of
/// hundreds of objects. Their names are made once per object and kept for the process's life.
pub fn numbered_object(n: u32) -> ObjectDef {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    // `x` and two base-36 digits: 1,296 prefixes no demo object uses.
    let n36 = n as usize % (36 * 36);
    let prefix = format!("x{}{}", DIGITS[n36 / 36] as char, DIGITS[n36 % 36] as char);
    let mut fields = system_fields();
    fields.extend([
        required(field("Name", "string", Gen::Company)),
        field("Amount__c", "currency", Gen::Currency(100_000)),
    ]);
    ObjectDef {
        name: leak(format!("Extra{n:03}__c")),
        label: leak(format!("Extra {n}")),
        key_prefix: leak(prefix),
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

pub(super) const TRACKED_FIELDS: &[&str] = &[
    "Name",
    "Type",
    "Industry",
    "Rating",
    "AnnualRevenue",
    "Phone",
];

pub(super) fn system_fields() -> Vec<FieldDef> {
    vec![
        field("Id", "id", Gen::Id),
        field("IsDeleted", "boolean", Gen::IsDeleted),
        field("OwnerId", "reference", Gen::Owner),
        field("CreatedDate", "datetime", Gen::CreatedDate),
        field("LastModifiedDate", "datetime", Gen::LastModifiedDate),
        field("SystemModstamp", "datetime", Gen::SystemModstamp),
    ]
}

pub(super) const INDUSTRIES: &[&str] = &[
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
pub(super) const ACCOUNT_TYPES: &[&str] = &[
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Partner",
    "Other",
];
pub(super) const RATINGS: &[&str] = &["Hot", "Warm", "Cold"];
pub(super) const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
pub(super) const LEAD_STATUS: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];
pub(super) const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
pub(super) const CASE_STATUS: &[&str] = &["New", "Working", "Escalated", "Closed"];
pub(super) const PRIORITIES: &[&str] = &["High", "Medium", "Low"];
pub(super) const INVOICE_STATUS: &[&str] = &["Draft", "Sent", "Paid", "Void"];

/// The six objects of the demo org.
pub fn demo_objects() -> Vec<ObjectDef> {
    let mut account = system_fields();
    account.extend([
        required(field("Name", "string", Gen::Company)),
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
        required(field("LastName", "string", Gen::LastName)),
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
        required(field("Name", "string", Gen::Sentence)),
        required(field("StageName", "picklist", Gen::Picklist(STAGES))),
        field("Amount", "currency", Gen::Currency(2_000_000)),
        field("Probability", "percent", Gen::Percent),
        FieldDef {
            calculated: true,
            formula: Some("Amount * Probability / 100"),
            ..field("ExpectedRevenue", "currency", Gen::ExpectedRevenue)
        },
        required(field("CloseDate", "date", Gen::Date)),
        field("IsWon", "boolean", Gen::Bool),
        field("LeadSource", "picklist", Gen::Picklist(LEAD_SOURCES)),
        field("Description", "textarea", Gen::Paragraph),
    ]);

    let mut lead = system_fields();
    lead.extend([
        field("FirstName", "string", Gen::FirstName),
        required(field("LastName", "string", Gen::LastName)),
        required(field("Company", "string", Gen::Company)),
        field("Email", "email", Gen::Email),
        required(field("Status", "picklist", Gen::Picklist(LEAD_STATUS))),
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
