//! Global and object describe, and the org's limits.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, read_org, sf_error};

pub(super) async fn describe_global(
    State(state): State<Shared>,
    Path(v): Path<String>,
) -> Json<Value> {
    let org = read_org(&state);
    let mut sobjects: Vec<Value> = org
        .objects
        .iter()
        .map(|o| {
            json!({
                "name": o.name, "label": o.label, "keyPrefix": o.key_prefix, "custom": o.custom,
                // History objects cannot be replicated with getUpdated() nor created by a user.
                "queryable": true, "retrieveable": true, "replicateable": !o.append_only,
                "createable": !o.append_only,
                "urls": { "describe": format!("/services/data/{v}/sobjects/{}/describe", o.name) },
            })
        })
        .collect();
    sobjects.push(json!({
        "name": "AggregateResult", "label": "Aggregate Result", "keyPrefix": null, "custom": false,
        "queryable": false, "retrieveable": false, "replicateable": false, "createable": false,
    }));
    Json(json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects }))
}

pub(super) fn soap_type(sf_type: &str) -> &'static str {
    match sf_type {
        "id" | "reference" => "tns:ID",
        "boolean" => "xsd:boolean",
        "int" => "xsd:int",
        "double" | "currency" | "percent" => "xsd:double",
        "date" => "xsd:date",
        "datetime" => "xsd:dateTime",
        "base64" => "xsd:base64Binary",
        "address" => "urn:address",
        "anyType" => "xsd:anyType",
        _ => "xsd:string",
    }
}

pub(super) async fn describe_object(
    State(state): State<Shared>,
    Path((_v, object)): Path<(String, String)>,
) -> Response {
    let org = read_org(&state);
    if object.eq_ignore_ascii_case("AggregateResult") {
        // Listed by the global describe, described, and not queryable, as in a real org.
        return Json(json!({
            "name": "AggregateResult", "label": "Aggregate Result", "keyPrefix": null,
            "custom": false, "queryable": false, "retrieveable": false, "replicateable": false,
            "createable": false, "fields": [],
        }))
        .into_response();
    }
    let Some((_, def)) = org.object(&object) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    let fields: Vec<Value> = def
        .visible_fields()
        .map(|(_, f)| {
            let reference_to: Vec<&str> = match f.generator {
                crate::org::Gen::Ref(prefix) => org
                    .objects
                    .iter()
                    .filter(|o| o.key_prefix == prefix)
                    .map(|o| o.name)
                    .collect(),
                crate::org::Gen::Owner => vec!["User"],
                _ => vec![],
            };
            let picklist: Vec<Value> = match f.generator {
                crate::org::Gen::Picklist(values) => values
                    .iter()
                    .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": false}))
                    .collect(),
                _ => vec![],
            };
            json!({
                "name": f.name, "label": f.name, "type": f.sf_type, "soapType": soap_type(f.sf_type),
                "length": f.length, "byteLength": f.length * 3, "digits": 0,
                "precision": f.precision, "scale": f.scale, "nillable": f.nillable,
                "calculated": f.calculated,
                "calculatedFormula": f.formula,
                "compoundFieldName": f.compound_field_name, "custom": f.custom,
                "referenceTo": reference_to, "picklistValues": picklist,
                "createable": !f.calculated && f.name != "Id", "updateable": !f.calculated && f.name != "Id",
                "filterable": f.sf_type != "textarea", "sortable": f.sf_type != "textarea",
            })
        })
        .collect();
    Json(json!({
        "name": def.name, "label": def.label, "keyPrefix": def.key_prefix, "custom": def.custom,
        "queryable": true, "retrieveable": true, "replicateable": !def.append_only,
        "createable": !def.append_only, "fields": fields,
    }))
    .into_response()
}

pub(super) async fn limits(State(state): State<Shared>) -> Json<Value> {
    let used = state.api_calls();
    let max = state.config.daily_api_limit;
    Json(json!({
        "DailyApiRequests": { "Max": max, "Remaining": max.saturating_sub(used) },
        "DailyBulkV2QueryJobs": { "Max": state.config.daily_bulk_query_jobs, "Remaining": state.config.daily_bulk_query_jobs.saturating_sub(state.bulk_jobs_created()) },
    }))
}
