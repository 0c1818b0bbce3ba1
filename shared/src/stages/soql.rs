//! SOQL for extraction: every field listed explicitly (FIELDS(ALL) is refused without a LIMIT),
//! and the window as unquoted datetime literals, `>=` on the start and `<` on the end.

use chrono::{DateTime, Utc};

use crate::contracts::{ObjectName, Window, is_valid_field_name, rfc3339};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SoqlError {
    #[error("object {object}: field name {field:?} is not a valid Salesforce API name")]
    InvalidField { object: String, field: String },
    #[error("object {object}: no fields to select")]
    NoFields { object: String },
}

/// The Ids of every live row of the object (a reconciliation's query; run through queryAll, so
/// the condition is what leaves the recycle bin out). Not bounded by the window: a row changed
/// after it still exists, and must be in the list.
pub fn reconciliation_query(object: &ObjectName) -> String {
    format!("SELECT Id FROM {object} WHERE IsDeleted = false")
}

/// `SELECT <fields> FROM <object> [WHERE <cursor> >= since AND <cursor> < until]`.
/// Without a cursor field the object can only be read whole, so the window is not applied.
pub fn extraction_query(
    object: &ObjectName,
    fields: &[&str],
    cursor: Option<&str>,
    window: &Window,
) -> Result<String, SoqlError> {
    if fields.is_empty() {
        return Err(SoqlError::NoFields {
            object: object.to_string(),
        });
    }
    for field in fields.iter().chain(cursor.iter()) {
        if !is_valid_field_name(field) {
            return Err(SoqlError::InvalidField {
                object: object.to_string(),
                field: field.to_string(),
            });
        }
    }
    let mut soql = format!("SELECT {} FROM {}", fields.join(", "), object);
    if let Some(cursor) = cursor {
        let mut conditions = Vec::new();
        if let Some(since) = window.since {
            conditions.push(format!("{cursor} >= {}", soql_datetime(since)));
        }
        conditions.push(format!("{cursor} < {}", soql_datetime(window.until)));
        soql.push_str(" WHERE ");
        soql.push_str(&conditions.join(" AND "));
    }
    Ok(soql)
}

/// SOQL datetime literal (unquoted, UTC).
pub fn soql_datetime(at: DateTime<Utc>) -> String {
    rfc3339(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn window(since: Option<u32>) -> Window {
        Window {
            since: since.map(|h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()),
            until: Utc.with_ymd_and_hms(2026, 1, 1, 12, 30, 0).unwrap(),
        }
    }

    fn account() -> ObjectName {
        ObjectName::new("Account").unwrap()
    }

    #[test]
    fn incremental_query_lists_fields_and_bounds_the_window() {
        let soql = extraction_query(
            &account(),
            &["Id", "Name", "SystemModstamp"],
            Some("SystemModstamp"),
            &window(Some(6)),
        )
        .unwrap();
        assert_eq!(
            soql,
            "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp >= \
             2026-01-01T06:00:00.000Z AND SystemModstamp < 2026-01-01T12:30:00.000Z"
        );
        assert!(!soql.contains("FIELDS("));
    }

    #[test]
    fn full_query_has_only_the_upper_bound() {
        let soql =
            extraction_query(&account(), &["Id"], Some("SystemModstamp"), &window(None)).unwrap();
        assert_eq!(
            soql,
            "SELECT Id FROM Account WHERE SystemModstamp < 2026-01-01T12:30:00.000Z"
        );
    }

    #[test]
    fn objects_without_a_cursor_are_read_whole() {
        let soql = extraction_query(&account(), &["Id", "Name"], None, &window(Some(1))).unwrap();
        assert_eq!(soql, "SELECT Id, Name FROM Account");
    }

    #[test]
    fn hostile_field_names_never_reach_the_query() {
        for bad in [
            "Name, (SELECT Id FROM Contacts)",
            "Id--",
            "Na'me",
            "",
            "Name FROM User",
        ] {
            let err = extraction_query(&account(), &["Id", bad], None, &window(None)).unwrap_err();
            assert_eq!(
                err,
                SoqlError::InvalidField {
                    object: "Account".into(),
                    field: bad.into()
                }
            );
        }
        assert!(extraction_query(&account(), &[], None, &window(None)).is_err());
    }
}
