//! Global and object describe: which objects exist and what fields they have.

use serde::{Deserialize, Serialize};

use crate::ports::ColumnSpec;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GlobalDescribe {
    pub sobjects: Vec<SObjectSummary>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SObjectSummary {
    pub name: String,
    #[serde(default)]
    pub queryable: bool,
    #[serde(default)]
    pub custom: bool,
    #[serde(default)]
    pub replicateable: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ObjectDescribe {
    pub name: String,
    /// Whether this user may query the object (Salesforce always says; a describe that does not
    /// is taken as "no").
    #[serde(default)]
    pub queryable: bool,
    pub fields: Vec<FieldDescribe>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(default)]
    pub length: u32,
    #[serde(default)]
    pub precision: u32,
    #[serde(default)]
    pub scale: u32,
    #[serde(default)]
    pub digits: u32,
    #[serde(default)]
    pub calculated: bool,
    #[serde(default)]
    pub nillable: bool,
    #[serde(default)]
    pub compound_field_name: Option<String>,
}

impl FieldDescribe {
    /// Whether a Bulk API 2.0 query may select this field: compound fields are refused ("Selecting
    /// compound data not supported in Bulk Query", their components are selected instead) and
    /// base64 fields are not supported.
    pub fn bulk_selectable(&self) -> bool {
        !matches!(self.field_type.as_str(), "address" | "location" | "base64")
    }

    pub fn column(&self) -> ColumnSpec {
        ColumnSpec {
            name: self.name.clone(),
            sf_type: self.field_type.clone(),
            length: self.length,
            precision: self.precision.max(self.digits),
            scale: self.scale,
        }
    }
}

impl ObjectDescribe {
    /// The field named `name`, in any case, as Salesforce matches names.
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The field that orders changes: SystemModstamp, else LastModifiedDate, else CreatedDate.
    pub fn cursor_field(&self) -> Option<&str> {
        crate::ports::CURSOR_FIELDS
            .into_iter()
            .find(|name| self.field(name).is_some())
    }

    /// The fields a Bulk query extracts, in describe order.
    pub fn bulk_fields(&self) -> Vec<&FieldDescribe> {
        self.fields.iter().filter(|f| f.bulk_selectable()).collect()
    }
}
