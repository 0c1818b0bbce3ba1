//! Compares the SQLite warehouse with the simulator's org, field for field.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sfpipe_simulator::Org;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectCheck {
    pub object: String,
    /// Rows in Salesforce, deleted ones included.
    pub salesforce_rows: u64,
    pub salesforce_live: u64,
    pub warehouse_rows: u64,
    pub warehouse_live: u64,
    pub warehouse_distinct_ids: u64,
    pub fields_checked: u64,
    /// The first few differences, for the report.
    pub mismatches: Vec<String>,
    pub mismatch_count: u64,
}

impl ObjectCheck {
    /// Every row Salesforce has (deleted ones flagged) is in the warehouse exactly once with
    /// Salesforce's values, and nothing else is, except hard-deleted rows, which the warehouse
    /// may hold flagged deleted (their last values are whatever was extracted last).
    pub fn is_exact(&self) -> bool {
        self.mismatch_count == 0
            && self.salesforce_live == self.warehouse_live
            && self.warehouse_rows == self.warehouse_distinct_ids
    }
}

/// Whether the warehouse holds Salesforce's value, as sfpipe loads it: NUL characters removed
/// (a value of NULs alone is NULL), numbers at their value.
fn same(sf_type: &str, expected: Option<&str>, actual: ValueRef<'_>) -> bool {
    let expected: Option<std::borrow::Cow<'_, str>> = expected.map(|e| {
        if e.contains('\0') {
            e.replace('\0', "").into()
        } else {
            e.into()
        }
    });
    let expected = expected.as_deref().filter(|e| !e.is_empty());
    match (expected, actual) {
        (None, ValueRef::Null) => true,
        (None, _) | (Some(_), ValueRef::Null) => false,
        (Some(e), ValueRef::Integer(i)) if sf_type == "boolean" => (e == "true") == (i == 1),
        (Some(e), ValueRef::Integer(i)) => {
            e.parse::<i64>().is_ok_and(|x| x == i) || e.parse::<f64>().is_ok_and(|x| x == i as f64)
        }
        (Some(e), ValueRef::Real(r)) => e
            .parse::<f64>()
            .is_ok_and(|x| (x - r).abs() <= 1e-9 * x.abs().max(1.0)),
        (Some(e), ValueRef::Text(t)) => e.as_bytes() == t,
        (Some(_), ValueRef::Blob(_)) => false,
    }
}

fn table_exists(connection: &Connection, table: &str) -> rusqlite::Result<bool> {
    connection
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get::<_, i64>(0),
        )
        .map(|n| n > 0)
}

/// Checks every object of the org against the warehouse, streaming both in Id order.
pub fn compare(org: &Org, warehouse: &Path) -> anyhow::Result<Vec<ObjectCheck>> {
    compare_objects(org, warehouse, &[])
}

/// Checks the named objects (all, if none are named), each on a thread and a connection of its
/// own: reading and comparing millions of rows is CPU work that spreads over the cores.
pub fn compare_objects(
    org: &Org,
    warehouse: &Path,
    only: &[&str],
) -> anyhow::Result<Vec<ObjectCheck>> {
    let selected: Vec<usize> = (0..org.objects.len())
        .filter(|&i| only.is_empty() || only.contains(&org.objects[i].name))
        .collect();
    std::thread::scope(|scope| {
        let checks: Vec<_> = selected
            .iter()
            .map(|&object| scope.spawn(move || check_object(org, warehouse, object)))
            .collect();
        checks
            .into_iter()
            .map(|check| {
                check
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an object's check panicked")))
            })
            .collect()
    })
}

/// Checks one object of the org against its table, streaming both in Id order.
fn check_object(org: &Org, warehouse: &Path, object: usize) -> anyhow::Result<ObjectCheck> {
    let connection = Connection::open(warehouse)?;
    let def = &org.objects[object];
    let mut check = ObjectCheck {
        object: def.name.to_string(),
        salesforce_rows: org.data[object].count,
        salesforce_live: org.live_count(object),
        ..ObjectCheck::default()
    };
    if !table_exists(&connection, def.name)? {
        check.mismatch_count = check.salesforce_rows;
        check
            .mismatches
            .push(format!("table {} is missing", def.name));
        return Ok(check);
    }
    let table = format!("\"{}\"", def.name);
    (check.warehouse_rows, check.warehouse_live, check.warehouse_distinct_ids) = connection
        .query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(\"IsDeleted\" = 0), 0), COUNT(DISTINCT \"Id\") FROM {table}"
            ),
            [],
            |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64, row.get::<_, i64>(2)? as u64)),
        )?;
    let fields: Vec<(usize, &sfpipe_simulator::org::FieldDef)> = def
        .visible_fields()
        .filter(|(_, f)| !matches!(f.sf_type, "address" | "location" | "base64"))
        .collect();
    let columns: Vec<String> = fields
        .iter()
        .map(|(_, f)| format!("\"{}\"", f.name))
        .collect();
    let mut statement = connection.prepare(&format!(
        "SELECT {} FROM {table} ORDER BY \"Id\"",
        columns.join(", ")
    ))?;
    let mut rows = statement.query([])?;
    let mut index = 0u64;
    let note = |check: &mut ObjectCheck, what: String| {
        check.mismatch_count += 1;
        if check.mismatches.len() < 10 {
            check.mismatches.push(what);
        }
    };
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let Some(position) = sfpipe_simulator::org::index_of_id(def.key_prefix, &id)
            .filter(|&i| i < org.data[object].count && i >= index)
        else {
            note(&mut check, format!("row {id:?} is not in Salesforce"));
            continue;
        };
        if position > index {
            let missing = (index..position)
                .filter(|&i| !org.row_state(object, i).purged)
                .count();
            if missing > 0 {
                note(
                    &mut check,
                    format!("{missing} rows before {id} are missing"),
                );
            }
            index = position;
        }
        if org.row_state(object, index).purged {
            // Gone from Salesforce: all that can be known is that it is deleted.
            let deleted = fields
                .iter()
                .position(|(_, f)| f.name == "IsDeleted")
                .map(|column| row.get_ref(column))
                .transpose()?;
            check.fields_checked += 1;
            if deleted.is_some_and(|d| !same("boolean", Some("true"), d)) {
                note(
                    &mut check,
                    format!("{id} was hard-deleted but is not flagged deleted"),
                );
            }
            index += 1;
            continue;
        }
        let expected = org.row_values(object, index);
        for (column, (position, field)) in fields.iter().enumerate() {
            let actual = row.get_ref(column)?;
            check.fields_checked += 1;
            if !same(field.sf_type, expected[*position].as_deref(), actual) {
                note(
                    &mut check,
                    format!(
                        "{} {}: Salesforce {:?}, warehouse {:?}",
                        expected[0].as_deref().unwrap_or("?"),
                        field.name,
                        expected[*position],
                        actual
                    ),
                );
            }
        }
        index += 1;
    }
    let missing = (index..org.data[object].count)
        .filter(|&i| !org.row_state(object, i).purged)
        .count();
    if missing > 0 {
        note(&mut check, format!("{missing} rows missing"));
    }
    drop(rows);
    Ok(check)
}
