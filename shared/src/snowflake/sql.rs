//! The SQL sfpipe sends to Snowflake: table definitions from the Salesforce describe, and the merge
//! of one run (COPY into a session-scoped load table, MERGE into the target, the watermark) as one
//! multi-statement request whose data changes sit in one transaction.
//!
//! Identifiers are Salesforce API names, already validated, upper-cased (so they work unquoted in
//! Snowflake) and quoted anyway. Literals are escaped for Snowflake's quote and backslash rules.

use chrono::{DateTime, Utc};

use crate::contracts::{ObjectName, rfc3339};
use crate::ports::{ColumnSpec, DeletedRows, MergeBatch, TableSchema};

pub const LINEAGE_COLUMNS: [(&str, &str); 4] = [
    ("_SFPIPE_RUN_ID", "VARCHAR"),
    ("_SFPIPE_EXTRACTED_AT", "TIMESTAMP_TZ"),
    ("_SFPIPE_FILE", "VARCHAR"),
    ("_SFPIPE_LOADED_AT", "TIMESTAMP_TZ"),
];
pub const STATE_TABLE: &str = "_SFPIPE_STATE";
/// The session-scoped table a run's files are copied into before the merge.
pub const LOAD_TABLE: &str = "_SFPIPE_LOAD";
/// The input formats the merge's casts rely on, whatever the account or user default.
pub const SESSION_FORMATS: &str =
    "ALTER SESSION SET TIMESTAMP_INPUT_FORMAT = 'AUTO', DATE_INPUT_FORMAT = 'AUTO'";
/// Snowflake accepts at most 1,000 names in one COPY's FILES list.
const FILES_PER_COPY: usize = 1000;

/// `"NAME"`: upper case, quoted, inner quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.to_ascii_uppercase().replace('"', "\"\""))
}

/// `'text'` with quotes doubled and backslashes escaped (Snowflake reads `\` as an escape).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

pub fn table_name(object: &ObjectName) -> String {
    ident(object.as_str())
}

/// The Snowflake type of a Salesforce field.
///
/// Text is unbounded `VARCHAR` and numbers `NUMBER(38, scale)`, whatever length and precision the
/// describe gives: admins widen text fields and add digits routinely, Snowflake documents no cost
/// for a declared length, and a column frozen at the first describe's size would refuse every
/// longer value from then on. Only a number's scale is kept, as Salesforce rounds to it; a scale
/// that grows later stops the object ([`ensure_table_statements`]).
pub fn column_type(column: &ColumnSpec) -> String {
    match column.sf_type.as_str() {
        "id" | "reference" => "VARCHAR(18)".into(),
        "boolean" => "BOOLEAN".into(),
        "int" | "long" => "NUMBER(38,0)".into(),
        "currency" | "percent" => format!("NUMBER(38,{})", number_scale(column, 2)),
        "double" if (1..=38).contains(&column.precision) => {
            format!("NUMBER(38,{})", number_scale(column, 0))
        }
        "double" => "FLOAT".into(),
        "datetime" => "TIMESTAMP_TZ".into(),
        "date" => "DATE".into(),
        // Salesforce writes times as 10:00:00.000Z, which no Snowflake TIME parses as is.
        "time" => "VARCHAR(16)".into(),
        _ => "VARCHAR".into(),
    }
}

fn number_scale(column: &ColumnSpec, default: u32) -> u32 {
    if (1..=38).contains(&column.precision) {
        column.scale.min(column.precision)
    } else {
        default
    }
}

/// A column of an existing table, as `INFORMATION_SCHEMA.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingColumn {
    pub name: String,
    /// `TEXT`, `NUMBER`, `FLOAT`, `BOOLEAN`, `DATE`, `TIMESTAMP_TZ`, ...
    pub data_type: String,
    pub length: Option<u64>,
    pub precision: Option<u32>,
    pub scale: Option<u32>,
}

/// The longest VARCHAR: what an unbounded `VARCHAR` declares.
const MAX_VARCHAR: u64 = 16_777_216;

/// The family a declared type belongs to, for deciding whether a column can follow a field.
fn family(sql_type: &str) -> &'static str {
    let upper = sql_type.to_ascii_uppercase();
    match upper.split('(').next().unwrap_or_default().trim() {
        "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "CHARACTER" => "text",
        "NUMBER" | "DECIMAL" | "NUMERIC" | "INT" | "INTEGER" | "BIGINT" | "FLOAT" | "DOUBLE"
        | "REAL" => "number",
        "BOOLEAN" => "boolean",
        "DATE" => "date",
        t if t.starts_with("TIMESTAMP") => "timestamp",
        _ => "other",
    }
}

fn column_definition(column: &ColumnSpec) -> String {
    let not_null = if column.name.eq_ignore_ascii_case("Id") {
        " NOT NULL"
    } else {
        ""
    };
    format!("{} {}{not_null}", ident(&column.name), column_type(column))
}

/// Lists the target table's columns (none when it does not exist yet).
pub fn existing_columns_sql(object: &ObjectName) -> String {
    format!(
        "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE \
         FROM INFORMATION_SCHEMA.COLUMNS \
         WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        literal(&object.as_str().to_ascii_uppercase())
    )
}

pub fn state_table_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"OBJECT_NAME\" VARCHAR NOT NULL, \"WATERMARK\" TIMESTAMP_TZ NOT NULL, \
         \"RUN_ID\" VARCHAR NOT NULL, \"UPDATED_AT\" TIMESTAMP_TZ NOT NULL)",
        ident(STATE_TABLE)
    )
}

/// The statements that bring the table to `schema`, given the columns it has (empty: absent).
/// Columns are only ever added, never dropped or retyped.
/// What makes the table fit the run's schema: create it, or add the columns it lacks and widen
/// the ones an older sfpipe declared narrower (`VARCHAR(n)`, `NUMBER(p,s)` with p < 38). A change
/// no `ALTER` can make (a field whose type changed family, a number whose scale grew) is an error
/// that says what to do.
pub fn ensure_table_statements(
    schema: &TableSchema,
    existing: &[ExistingColumn],
) -> Result<Vec<String>, String> {
    let table = table_name(&schema.object);
    let mut statements = vec![state_table_sql()];
    if existing.is_empty() {
        let definitions: Vec<String> = schema
            .columns
            .iter()
            .map(column_definition)
            .chain(
                LINEAGE_COLUMNS
                    .iter()
                    .map(|(name, sql_type)| format!("{} {sql_type}", ident(name))),
            )
            .collect();
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {table} ({})",
            definitions.join(", ")
        ));
        return Ok(statements);
    }
    for column in &schema.columns {
        let wanted = column_type(column);
        let Some(have) = existing
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&column.name))
        else {
            statements.push(format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {wanted}",
                ident(&column.name),
            ));
            continue;
        };
        let name = ident(&column.name);
        let redo = format!(
            "rename the column (ALTER TABLE {table} RENAME COLUMN {name} TO {}) and run a full \
             refresh of {}: sfpipe then adds the column as the field is now",
            ident(&format!("{}_OLD", column.name)),
            schema.object
        );
        let (want_family, have_family) = (family(&wanted), family(&have.data_type));
        if want_family != have_family && have_family != "other" {
            return Err(format!(
                "field {} is {} in Salesforce now, but its column {name} is {}: {redo}",
                column.name, column.sf_type, have.data_type
            ));
        }
        match want_family {
            "text" if wanted == "VARCHAR" && have.length.is_some_and(|l| l < MAX_VARCHAR) => {
                statements.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {name} SET DATA TYPE VARCHAR"
                ));
            }
            "number"
                if wanted.starts_with("NUMBER")
                    && have.data_type.eq_ignore_ascii_case("NUMBER") =>
            {
                let want_scale = number_scale(column, 0);
                let have_scale = have.scale.unwrap_or(0);
                if want_scale > have_scale {
                    return Err(format!(
                        "field {} now has {want_scale} decimal places, its column {name} {have_scale}, \
                         and Snowflake cannot change a column's scale (values would be rounded): {redo}",
                        column.name
                    ));
                }
                if have.precision.is_some_and(|p| p < 38) {
                    statements.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {name} SET DATA TYPE NUMBER(38,{have_scale})"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(statements)
}

/// The merge of one run: the set-up its session needs, then one Snowflake Scripting block that runs
/// the transaction and rolls it back itself when any statement in it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// Outside the transaction: the session's input formats and the load table (DDL, which would
    /// commit an open transaction).
    pub setup: Vec<String>,
    /// The block's statements between BEGIN TRANSACTION and COMMIT.
    pub transaction: Vec<String>,
}

/// The columns of the block's one result row.
pub const ROWS_READ: &str = "ROWS_READ";
pub const ROWS_CHANGED: &str = "ROWS_CHANGED";
pub const NEWEST_MS: &str = "NEWEST_MS";

impl MergePlan {
    /// Every statement of the request; the block is the last, and its result is the merge's.
    pub fn statements(&self) -> Vec<String> {
        let mut statements = self.setup.clone();
        statements.push(self.block());
        statements
    }

    /// Snowflake keeps a transaction open after a statement in it fails, and a request that ends
    /// so leaves it detached, holding its locks for hours: the handler rolls it back at once and
    /// raises the error it caught. `$$` cannot occur inside: every name and file key is made of
    /// validated identifiers.
    pub fn block(&self) -> String {
        let body: String = self
            .transaction
            .iter()
            .map(|s| format!("  {s};\n"))
            .collect();
        format!(
            "EXECUTE IMMEDIATE $$\nDECLARE\n  rows_changed INTEGER DEFAULT 0;\n  summary RESULTSET;\n\
             BEGIN\n  BEGIN TRANSACTION;\n{body}  COMMIT;\n  RETURN TABLE(summary);\n\
             EXCEPTION\n  WHEN OTHER THEN\n    ROLLBACK;\n    RAISE;\nEND;\n$$"
        )
    }
}

/// The load of a run's files into the session's load table, every value as text, each file's
/// header checked against the run's columns: the set-up and the transaction's first statements,
/// for a merge and a reconciliation alike. `stage`: the external stage over the blob store's
/// root, so a blob key is a path in the stage.
pub(crate) fn load_plan(batch: &MergeBatch, stage: &str) -> MergePlan {
    let schema = &batch.schema;
    let load = ident(LOAD_TABLE);
    let file = ident("_SFPIPE_FILE");
    let names: Vec<String> = schema.columns.iter().map(|c| ident(&c.name)).collect();
    // The casts read Salesforce's ISO values with AUTO formats; an account or user may have set
    // others, so this request's session sets what it needs.
    let mut setup = vec![SESSION_FORMATS.to_string()];
    // DDL commits any open transaction in Snowflake, so the load table is made before BEGIN. It
    // lives as long as the request's session. Every value is loaded as text and typed in the
    // MERGE, where a bad value fails the whole transaction.
    // A COPY with a transformation loads by position and ignores ERROR_ON_COLUMN_COUNT_MISMATCH
    // (Snowflake documents it), so each file's header row is loaded too, with the field after the
    // last (`_SFPIPE_EXTRA`), and checked against the run's columns before anything is merged.
    let row = ident("_SFPIPE_ROW");
    let extra = ident("_SFPIPE_EXTRA");
    let load_columns: Vec<String> = names
        .iter()
        .chain([&file, &extra])
        .map(|n| format!("{n} VARCHAR"))
        .chain(std::iter::once(format!("{row} NUMBER")))
        .collect();
    setup.push(format!(
        "CREATE OR REPLACE TEMPORARY TABLE {load} ({})",
        load_columns.join(", ")
    ));
    let mut statements = Vec::new();
    let positions: Vec<String> = (1..=names.len() + 1).map(|i| format!("${i}")).collect();
    for files in batch.files.chunks(FILES_PER_COPY) {
        let files: Vec<String> = files.iter().map(|f| literal(f)).collect();
        statements.push(format!(
            "COPY INTO {load} ({}, {extra}, {file}, {row}) FROM (SELECT {}, METADATA$FILENAME, \
             METADATA$FILE_ROW_NUMBER FROM @{stage}) \
             FILES = ({}) \
             FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 0 FIELD_OPTIONALLY_ENCLOSED_BY = '\"' \
             EMPTY_FIELD_AS_NULL = TRUE NULL_IF = () ESCAPE_UNENCLOSED_FIELD = NONE \
             ERROR_ON_COLUMN_COUNT_MISMATCH = FALSE ENCODING = 'UTF8') \
             ON_ERROR = ABORT_STATEMENT FORCE = TRUE",
            names.join(", "),
            positions.join(", "),
            files.join(", ")
        ));
    }
    // Fails the request (a cast error, SQL state 22018) when a header is not the run's columns in
    // order; names compare in any case, as Salesforce's do.
    // A byte order mark before the first name is not part of it.
    let header_matches: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = if i == 0 {
                format!("REPLACE({}, CHR(65279), '')", ident(&c.name))
            } else {
                ident(&c.name)
            };
            format!(
                "UPPER({name}) IS NOT DISTINCT FROM {}",
                literal(&c.name.to_ascii_uppercase())
            )
        })
        .chain(std::iter::once(format!("{extra} IS NULL")))
        .collect();
    statements.push(format!(
        "SELECT CAST('the header of ' || {file} || ' is not the run''s columns' AS NUMBER) \
         FROM {load} WHERE {row} = 1 AND NOT ({})",
        header_matches.join(" AND ")
    ));
    statements.push(format!("DELETE FROM {load} WHERE {row} = 1"));
    MergePlan {
        setup,
        transaction: statements,
    }
}

/// `stage`: the external stage over the blob store's root, so a blob key is a path in the stage.
pub fn merge_plan(
    batch: &MergeBatch,
    stage: &str,
    loaded_at: DateTime<Utc>,
    deleted: DeletedRows,
) -> MergePlan {
    let schema = &batch.schema;
    let table = table_name(&schema.object);
    let load = ident(LOAD_TABLE);
    let file = ident("_SFPIPE_FILE");
    let names: Vec<String> = schema.columns.iter().map(|c| ident(&c.name)).collect();
    // The field that orders changes: SystemModstamp, or CreatedDate on a history object.
    let cursor_field = schema.cursor();
    let has_cursor = cursor_field.is_some();
    let MergePlan {
        setup,
        transaction: mut statements,
    } = load_plan(batch, stage);

    let typed: Vec<String> = schema
        .columns
        .iter()
        .map(|c| {
            let n = ident(&c.name);
            let ty = column_type(c);
            // NUL characters are removed from text, as the SQLite warehouse does (real orgs have
            // them in pasted text; Snowflake would keep them): NULs alone are NULL.
            let value = if ty.starts_with("VARCHAR") {
                format!("REPLACE({n}, CHR(0), '')")
            } else {
                n.clone()
            };
            format!("CAST(NULLIF({value}, '') AS {ty}) AS {n}")
        })
        .chain([
            format!(
                "{} AS {}",
                literal(batch.run_id.as_str()),
                ident("_SFPIPE_RUN_ID")
            ),
            format!(
                "CAST({} AS TIMESTAMP_TZ) AS {}",
                literal(&rfc3339(batch.extracted_at)),
                ident("_SFPIPE_EXTRACTED_AT")
            ),
            format!("{file} AS {file}"),
            format!(
                "CAST({} AS TIMESTAMP_TZ) AS {}",
                literal(&rfc3339(loaded_at)),
                ident("_SFPIPE_LOADED_AT")
            ),
        ])
        .collect();
    let id = ident("Id");
    let cursor = cursor_field.map(ident).unwrap_or_default();
    let newest_first = if has_cursor {
        format!("{cursor} DESC NULLS LAST, {file} DESC")
    } else {
        format!("{file} DESC")
    };
    let source = format!(
        "SELECT * FROM (SELECT {} FROM {load}) \
         QUALIFY ROW_NUMBER() OVER (PARTITION BY {id} ORDER BY {newest_first}) = 1",
        typed.join(", ")
    );
    let all: Vec<String> = names
        .iter()
        .cloned()
        .chain(LINEAGE_COLUMNS.iter().map(|(n, _)| ident(n)))
        .collect();
    let differs: Vec<String> = names
        .iter()
        .filter(|n| **n != id)
        .map(|n| format!("s.{n} IS DISTINCT FROM t.{n}"))
        .collect();
    let differs = if differs.is_empty() {
        "FALSE".to_string()
    } else {
        differs.join(" OR ")
    };
    let extracted = ident("_SFPIPE_EXTRACTED_AT");
    // A stored row changes only for a newer version, or the same version with other values; a
    // formula refresh only for the same version, not extracted since.
    let condition = if batch.update_only {
        let same_version = if has_cursor {
            format!("s.{cursor} = t.{cursor} AND ")
        } else {
            String::new()
        };
        format!(
            "{same_version}(t.{extracted} IS NULL OR t.{extracted} <= s.{extracted}) AND ({differs})"
        )
    } else if has_cursor {
        format!(
            "t.{cursor} IS NULL OR s.{cursor} > t.{cursor} OR (s.{cursor} = t.{cursor} AND ({differs}))"
        )
    } else {
        differs
    };
    let updates: Vec<String> = all
        .iter()
        .filter(|n| **n != id)
        .map(|n| format!("{n} = s.{n}"))
        .collect();
    let values: Vec<String> = all.iter().map(|n| format!("s.{n}")).collect();
    let is_deleted = ident("IsDeleted");
    let removes =
        deleted == DeletedRows::Remove && names.contains(&is_deleted) && !batch.update_only;
    // Removal happens for the stored version or a newer one; an older deletion changes nothing.
    let (remove, insert_when) = if removes {
        let not_older = if has_cursor {
            format!(" AND (t.{cursor} IS NULL OR s.{cursor} >= t.{cursor})")
        } else {
            String::new()
        };
        (
            format!("WHEN MATCHED AND s.{is_deleted} = TRUE{not_older} THEN DELETE "),
            format!(" AND s.{is_deleted} IS DISTINCT FROM TRUE"),
        )
    } else {
        (String::new(), String::new())
    };
    // A formula refresh never inserts: a row it does not find is not the refresh's to create.
    let insert = if batch.update_only {
        String::new()
    } else {
        format!(
            " WHEN NOT MATCHED{insert_when} THEN INSERT ({}) VALUES ({})",
            all.join(", "),
            values.join(", ")
        )
    };
    statements.push(format!(
        "MERGE INTO {table} AS t USING ({source}) AS s ON t.{id} = s.{id} \
         {remove}WHEN MATCHED AND ({condition}) THEN UPDATE SET {}{insert}",
        updates.join(", "),
    ));
    // Read at once: any statement after the last DML makes SQLROWCOUNT NULL.
    statements.push("rows_changed := SQLROWCOUNT".into());
    let newest = if has_cursor {
        format!("MAX(CAST(NULLIF({cursor}, '') AS TIMESTAMP_TZ))")
    } else {
        "CAST(NULL AS TIMESTAMP_TZ)".into()
    };
    if has_cursor && !batch.update_only {
        let state = ident(STATE_TABLE);
        let object = literal(schema.object.as_str());
        let run = literal(batch.run_id.as_str());
        let now = format!("CAST({} AS TIMESTAMP_TZ)", literal(&rfc3339(loaded_at)));
        // Forward only: an older run merged late never moves the watermark back.
        statements.push(format!(
            "MERGE INTO {state} AS t USING (SELECT {object} AS \"OBJECT_NAME\", {newest} AS \"WATERMARK\" FROM {load}) AS s \
             ON t.\"OBJECT_NAME\" = s.\"OBJECT_NAME\" \
             WHEN MATCHED AND s.\"WATERMARK\" > t.\"WATERMARK\" THEN UPDATE SET \"WATERMARK\" = s.\"WATERMARK\", \"RUN_ID\" = {run}, \"UPDATED_AT\" = {now} \
             WHEN NOT MATCHED AND s.\"WATERMARK\" IS NOT NULL THEN INSERT (\"OBJECT_NAME\", \"WATERMARK\", \"RUN_ID\", \"UPDATED_AT\") VALUES (s.\"OBJECT_NAME\", s.\"WATERMARK\", {run}, {now})"
        ));
    }
    statements.push(format!(
        "summary := (SELECT COUNT(*) AS \"{ROWS_READ}\", :rows_changed AS \"{ROWS_CHANGED}\", \
         DATE_PART(EPOCH_MILLISECOND, {newest}) AS \"{NEWEST_MS}\" FROM {load})"
    ));
    MergePlan {
        setup,
        transaction: statements,
    }
}

/// A row's lineage columns (timestamps as epoch milliseconds) and its IsDeleted.
pub fn lineage_sql(object: &ObjectName, id: &str) -> String {
    let [run, _, file, _] = LINEAGE_COLUMNS.map(|(n, _)| ident(n));
    format!(
        "SELECT {run}, {file}, DATE_PART(EPOCH_MILLISECOND, {}), DATE_PART(EPOCH_MILLISECOND, {}), {} FROM {} WHERE {} = {}",
        ident(LINEAGE_COLUMNS[1].0),
        ident(LINEAGE_COLUMNS[3].0),
        ident("IsDeleted"),
        table_name(object),
        ident("Id"),
        literal(id)
    )
}

pub fn watermark_statements(object: &ObjectName) -> Vec<String> {
    vec![
        state_table_sql(),
        format!(
            "SELECT DATE_PART(EPOCH_MILLISECOND, \"WATERMARK\") AS \"WATERMARK_MS\" FROM {} WHERE \"OBJECT_NAME\" = {}",
            ident(STATE_TABLE),
            literal(object.as_str())
        ),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::contracts::RunId;

    fn column(name: &str, sf_type: &str, length: u32, precision: u32, scale: u32) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            sf_type: sf_type.into(),
            length,
            precision,
            scale,
        }
    }

    fn schema() -> TableSchema {
        TableSchema {
            object: ObjectName::new("Invoice__c").unwrap(),
            columns: vec![
                column("Id", "id", 18, 0, 0),
                column("Name", "string", 80, 0, 0),
                column("Amount__c", "currency", 0, 16, 2),
                column("IsDeleted", "boolean", 0, 0, 0),
                column("SystemModstamp", "datetime", 0, 0, 0),
            ],
        }
    }

    #[test]
    fn salesforce_types_map_to_snowflake_types() {
        let cases = [
            (column("Id", "id", 18, 0, 0), "VARCHAR(18)"),
            (column("OwnerId", "reference", 18, 0, 0), "VARCHAR(18)"),
            (column("Amount", "currency", 0, 18, 2), "NUMBER(38,2)"),
            (column("Probability", "percent", 0, 3, 0), "NUMBER(38,0)"),
            (column("Score__c", "double", 0, 0, 0), "FLOAT"),
            (column("Ratio__c", "double", 0, 10, 4), "NUMBER(38,4)"),
            (column("CreatedDate", "datetime", 0, 0, 0), "TIMESTAMP_TZ"),
            (column("CloseDate", "date", 0, 0, 0), "DATE"),
            (column("IsWon", "boolean", 0, 0, 0), "BOOLEAN"),
            (column("NumberOfEmployees", "int", 0, 9, 0), "NUMBER(38,0)"),
            (column("Stage", "picklist", 40, 0, 0), "VARCHAR"),
            (column("Description", "textarea", 32000, 0, 0), "VARCHAR"),
            (column("Body", "base64", 0, 0, 0), "VARCHAR"),
        ];
        for (c, want) in cases {
            assert_eq!(column_type(&c), want, "{}", c.name);
        }
    }

    #[test]
    fn identifiers_and_literals_cannot_break_out() {
        assert_eq!(ident("a\"b"), "\"A\"\"B\"");
        assert_eq!(literal("it's \\'"), "'it''s \\\\'''");
    }

    fn existing(
        name: &str,
        data_type: &str,
        length: Option<u64>,
        p: u32,
        s: u32,
    ) -> ExistingColumn {
        ExistingColumn {
            name: name.into(),
            data_type: data_type.into(),
            length,
            precision: (data_type == "NUMBER").then_some(p),
            scale: (data_type == "NUMBER").then_some(s),
        }
    }

    #[test]
    fn a_new_table_is_created_and_an_old_one_gains_columns_and_widens() {
        let created = ensure_table_statements(&schema(), &[]).unwrap();
        assert!(created[1].starts_with("CREATE TABLE IF NOT EXISTS \"INVOICE__C\""));
        assert!(created[1].contains("\"ID\" VARCHAR(18) NOT NULL"));
        assert!(created[1].contains("\"_SFPIPE_LOADED_AT\" TIMESTAMP_TZ"));
        // As an older sfpipe made it: Name VARCHAR(80), Amount__c NUMBER(18,2).
        let old = [
            existing("ID", "TEXT", Some(18), 0, 0),
            existing("NAME", "TEXT", Some(80), 0, 0),
            existing("AMOUNT__C", "NUMBER", None, 18, 2),
            existing("ISDELETED", "BOOLEAN", None, 0, 0),
        ];
        let altered = ensure_table_statements(&schema(), &old).unwrap();
        assert_eq!(
            altered[1..],
            [
                "ALTER TABLE \"INVOICE__C\" ALTER COLUMN \"NAME\" SET DATA TYPE VARCHAR",
                "ALTER TABLE \"INVOICE__C\" ALTER COLUMN \"AMOUNT__C\" SET DATA TYPE NUMBER(38,2)",
                "ALTER TABLE \"INVOICE__C\" ADD COLUMN IF NOT EXISTS \"SYSTEMMODSTAMP\" TIMESTAMP_TZ",
            ]
        );
        let current = [
            existing("ID", "TEXT", Some(18), 0, 0),
            existing("NAME", "TEXT", Some(16_777_216), 0, 0),
            existing("AMOUNT__C", "NUMBER", None, 38, 2),
            existing("ISDELETED", "BOOLEAN", None, 0, 0),
            existing("SYSTEMMODSTAMP", "TIMESTAMP_TZ", None, 0, 0),
        ];
        assert_eq!(
            ensure_table_statements(&schema(), &current).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_change_no_alter_can_make_stops_the_object_with_what_to_do() {
        let mut grown = schema();
        grown.columns[2].scale = 4;
        let old = [
            existing("ID", "TEXT", Some(18), 0, 0),
            existing("AMOUNT__C", "NUMBER", None, 38, 2),
        ];
        let error = ensure_table_statements(&grown, &old).unwrap_err();
        assert!(
            error.contains("Amount__c")
                && error.contains("RENAME COLUMN")
                && error.contains("full refresh"),
            "{error}"
        );
        let text_now = [
            existing("ID", "TEXT", Some(18), 0, 0),
            existing("NAME", "NUMBER", None, 38, 0),
        ];
        let error = ensure_table_statements(&schema(), &text_now).unwrap_err();
        assert!(
            error.contains("Name") && error.contains("string"),
            "{error}"
        );
    }

    #[test]
    fn the_merge_is_one_transaction_that_types_dedups_and_moves_the_watermark_forward() {
        let batch = MergeBatch {
            schema: schema(),
            update_only: false,
            reconcile_until: None,
            request_id: None,
            loaded_at: None,
            run_id: RunId::new("r-1").unwrap(),
            files: vec!["runs/Invoice__c/r-1/part-00001.csv.gz".into()],
            extracted_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        };
        let plan = merge_plan(
            &batch,
            "SFPIPE.RAW.SFPIPE_STAGE",
            Utc::now(),
            DeletedRows::Flag,
        );
        let merge_of = |plan: &MergePlan| {
            plan.transaction
                .iter()
                .position(|s| s.starts_with("MERGE INTO \"INVOICE__C\""))
                .expect("the target's MERGE")
        };
        let merge_index = merge_of(&plan);
        assert!(!plan.transaction[merge_index].contains("THEN DELETE"));
        let removing = merge_plan(&batch, "S", Utc::now(), DeletedRows::Remove);
        assert!(removing.transaction[merge_of(&removing)].contains(
            "WHEN MATCHED AND s.\"ISDELETED\" = TRUE AND (t.\"SYSTEMMODSTAMP\" IS NULL OR s.\"SYSTEMMODSTAMP\" >= t.\"SYSTEMMODSTAMP\") THEN DELETE"
        ));
        assert_eq!(plan.setup.len(), 2);
        assert_eq!(plan.setup[0], SESSION_FORMATS);
        assert!(plan.setup[1].starts_with("CREATE OR REPLACE TEMPORARY TABLE"));
        // Nothing inside the transaction is DDL, which would commit early.
        for statement in &plan.transaction {
            assert!(
                !statement.starts_with("CREATE") && !statement.starts_with("ALTER"),
                "{statement}"
            );
        }
        let s = &plan.transaction;
        assert!(s[0].contains("METADATA$FILE_ROW_NUMBER FROM @SFPIPE.RAW.SFPIPE_STAGE"));
        assert!(s[0].contains("FILES = ('runs/Invoice__c/r-1/part-00001.csv.gz')"));
        // Each file's header row is loaded, checked against the run's columns, then dropped.
        assert!(s[0].contains("SKIP_HEADER = 0"));
        assert!(s[1].contains("UPPER(\"AMOUNT__C\") IS NOT DISTINCT FROM 'AMOUNT__C'"));
        assert!(s[1].contains("\"_SFPIPE_EXTRA\" IS NULL"));
        assert_eq!(
            s[2],
            "DELETE FROM \"_SFPIPE_LOAD\" WHERE \"_SFPIPE_ROW\" = 1"
        );
        let merge = &s[merge_index];
        assert!(merge.contains("PARTITION BY \"ID\" ORDER BY \"SYSTEMMODSTAMP\" DESC"));
        assert!(merge.contains("CAST(NULLIF(\"AMOUNT__C\", '') AS NUMBER(38,2))"));
        assert!(merge.contains("s.\"SYSTEMMODSTAMP\" > t.\"SYSTEMMODSTAMP\""));
        // The count is read before any other statement could clear it.
        assert_eq!(s[merge_index + 1], "rows_changed := SQLROWCOUNT");
        assert!(s[merge_index + 2].contains("s.\"WATERMARK\" > t.\"WATERMARK\""));
        assert!(
            s.last()
                .is_some_and(|s| s.starts_with("summary := (SELECT COUNT(*)"))
        );
        // The block: the transaction, and a handler that rolls it back and raises the error.
        let statements = plan.statements();
        assert_eq!(statements.len(), 3);
        let block = &statements[2];
        assert!(
            block.starts_with("EXECUTE IMMEDIATE $$\nDECLARE"),
            "{block}"
        );
        assert!(
            block.contains("BEGIN\n  BEGIN TRANSACTION;\n  COPY INTO"),
            "{block}"
        );
        assert!(
            block.ends_with(
                "  COMMIT;\n  RETURN TABLE(summary);\nEXCEPTION\n  WHEN OTHER THEN\n    ROLLBACK;\n    RAISE;\nEND;\n$$"
            ),
            "{block}"
        );
    }

    #[test]
    fn copies_are_split_at_a_thousand_files() {
        let batch = MergeBatch {
            schema: schema(),
            update_only: false,
            reconcile_until: None,
            request_id: None,
            loaded_at: None,
            run_id: RunId::new("r-1").unwrap(),
            files: (0..2500).map(|i| format!("f{i}")).collect(),
            extracted_at: Utc::now(),
        };
        let plan = merge_plan(&batch, "S", Utc::now(), DeletedRows::Flag);
        let copies = plan
            .transaction
            .iter()
            .filter(|s| s.starts_with("COPY INTO"))
            .count();
        assert_eq!(copies, 3);
    }
}
