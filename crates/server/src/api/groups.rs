//! `/api/v1/groups` (admins): groups, their members, quota and agent pools.
//! Groups from the identity provider's claim (`source: oidc`) are kept in
//! step at each login, so a change the next login would undo is refused
//! unless the admin says `force=true` (docs/GROUPS.md).

use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::AdminUser;
use crate::auth::client_addr::ClientAddr;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::quota::LimitsView;
use crate::state::AppState;
use crate::store::{GroupMember, GroupRecord, GroupSource, GroupWrite};
use crate::tenancy::{check_group_name, check_pool_list};
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use streamspace_protocol::UserId;
use utoipa::{IntoParams, ToSchema};

/// `?force=true`: do it although the identity provider's claim undoes it.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClaimForce {
    /// Go ahead although the change concerns the identity provider's
    /// groups claim, which the member's next login applies again.
    #[serde(default)]
    force: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Group)]
pub struct GroupView {
    id: String,
    name: String,
    /// `local` (an admin's) or `oidc` (from the identity provider's claim).
    source: GroupSource,
    /// Its members get at least these limits (`null`: the group sets none).
    quota: LimitsView,
    /// The agent pools its members may place sessions on.
    pools: Vec<String>,
    members: Vec<GroupMember>,
    #[schema(format = DateTime)]
    created_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1 to 128 printable characters; what templates' `allowed_groups` name.
    #[schema(max_length = 128, example = "engineering")]
    name: String,
    #[serde(default)]
    quota: LimitsView,
    /// Agent pool names (slugs), at most 64.
    #[serde(default)]
    pools: Vec<String>,
}

/// A change to a group: what is absent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    #[serde(default)]
    #[schema(max_length = 128)]
    name: Option<String>,
    /// Replaces the whole quota.
    #[serde(default)]
    quota: Option<LimitsView>,
    /// Replaces every pool.
    #[serde(default)]
    pools: Option<Vec<String>>,
}

async fn view(state: &AppState, group: GroupRecord) -> ApiResult<GroupView> {
    let members = state.store.group_members(&group.id).await?;
    Ok(GroupView {
        id: group.id,
        name: group.name,
        source: group.source,
        quota: group.limits.into(),
        pools: group.pools,
        members,
        created_at: super::views::time(group.created_at),
    })
}

async fn find(state: &AppState, id: &str) -> ApiResult<GroupRecord> {
    state
        .store
        .get_group(id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))
}

async fn audit(
    state: &AppState,
    admin: &AdminUser,
    client: ClientAddr,
    kind: &str,
    group: &str,
    detail: serde_json::Value,
) {
    let event = AuditEvent::new(admin.0.actor(), kind)
        .target(format!("group:{group}"))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(detail);
    audit_log::record(state, event).await;
}

/// List groups (admin)
#[utoipa::path(
    get,
    operation_id = "listGroups",
    path = "/api/v1/groups",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every group, by name, with its members", body = Vec<GroupView>),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn list(State(state): State<AppState>, _: AdminUser) -> ApiResult<Json<Vec<GroupView>>> {
    let mut views = Vec::new();
    for group in state.store.list_groups().await? {
        views.push(view(&state, group).await?);
    }
    Ok(Json(views))
}

/// Create a group (admin)
#[utoipa::path(
    post,
    operation_id = "createGroup",
    path = "/api/v1/groups",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, description = "Created (`source: local`)", body = GroupView),
        (status = 400, description = "A field is not valid", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<NewGroup>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    check_group_name("name", &input.name)?;
    let write = GroupWrite {
        name: input.name,
        limits: input.quota.into(),
        pools: check_pool_list("pools", input.pools)?,
    };
    let group = state.store.create_group(&write).await?;
    let detail = json!({"quota": input.quota, "pools": group.pools});
    audit(&state, &admin, client, "group.create", &group.name, detail).await;
    Ok((StatusCode::CREATED, Json(view(&state, group).await?)))
}

/// Get a group (admin)
#[utoipa::path(
    get,
    operation_id = "getGroup",
    path = "/api/v1/groups/{id}",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The group's id or name")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<GroupView>> {
    let group = find(&state, &id).await?;
    Ok(Json(view(&state, group).await?))
}

/// Change a group (admin)
///
/// Renames it, replaces its quota or its pools; what is absent stays. A
/// group from the identity provider keeps its name (the claim names it).
#[utoipa::path(
    patch,
    operation_id = "updateGroup",
    path = "/api/v1/groups/{id}",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The group's id or name")),
    request_body = GroupUpdate,
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 400, description = "A field is not valid", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The name is taken, or the group's name comes from the identity provider", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<GroupUpdate>,
) -> ApiResult<Json<GroupView>> {
    let group = find(&state, &id).await?;
    let write = updated(&group, input)?;
    let changed = state
        .store
        .update_group(&group.id, &write)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    let detail = json!({
        "name": write.name,
        "quota": LimitsView::from(write.limits),
        "pools": write.pools,
    });
    audit(&state, &admin, client, "group.update", &group.name, detail).await;
    Ok(Json(view(&state, changed).await?))
}

/// `group` with `input` applied, checked.
fn updated(group: &GroupRecord, input: GroupUpdate) -> ApiResult<GroupWrite> {
    let name = match input.name {
        Some(name) if name != group.name => {
            check_group_name("name", &name)?;
            if group.source == GroupSource::Oidc {
                return Err(ApiError::Conflict(format!(
                    "group {:?} comes from the identity provider's groups claim: renamed, the \
                     next login of a member would create {:?} again; rename it at the provider",
                    group.name, group.name
                )));
            }
            name
        }
        _ => group.name.clone(),
    };
    let pools = match input.pools {
        Some(pools) => check_pool_list("pools", pools)?,
        None => group.pools.clone(),
    };
    Ok(GroupWrite {
        name,
        limits: input.quota.map_or(group.limits, Into::into),
        pools,
    })
}

/// Delete a group (admin)
///
/// Its members lose what it gave them (templates, pools, quota). A group
/// from the identity provider with members is refused without
/// `force=true`: their next login would create it again (without its
/// quota and pools).
#[utoipa::path(
    delete,
    operation_id = "deleteGroup",
    path = "/api/v1/groups/{id}",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The group's id or name"), ClaimForce),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "It comes from the identity provider and has members (and `force` was not given)", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ClaimForce>,
) -> ApiResult<StatusCode> {
    let group = find(&state, &id).await?;
    let members = state.store.group_members(&group.id).await?;
    if group.source == GroupSource::Oidc && !members.is_empty() && !query.force {
        return Err(ApiError::Conflict(format!(
            "group {:?} comes from the identity provider's groups claim and has {} member(s): \
             their next login creates it again, without its quota and pools. Remove it at the \
             provider, or delete it with ?force=true anyway",
            group.name,
            members.len()
        )));
    }
    if !state.store.delete_group(&group.id).await? {
        return Err(ApiError::not_found("group"));
    }
    let detail = json!({"members": members.len(), "force": query.force});
    audit(&state, &admin, client, "group.delete", &group.name, detail).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a member (admin)
///
/// Idempotent. A membership from the identity provider becomes the
/// admin's (`source: local`): later logins leave it alone.
#[utoipa::path(
    put,
    operation_id = "addGroupMember",
    path = "/api/v1/groups/{id}/members/{user_id}",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = String, Path, description = "The group's id or name"),
        ("user_id" = String, Path, description = "The user's id"),
    ),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such group or user", body = ErrorBody),
    ),
)]
pub async fn add_member(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    ApiPath((id, user_id)): ApiPath<(String, UserId)>,
) -> ApiResult<Json<GroupView>> {
    let group = find(&state, &id).await?;
    let user = state
        .store
        .get_user(&user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let before = state.store.membership(&group.id, &user.id).await?;
    state.store.add_group_member(&group.id, &user.id).await?;
    let detail = json!({"user": user.username, "was": before.map(GroupSource::as_str)});
    audit(
        &state,
        &admin,
        client,
        "group.member_add",
        &group.name,
        detail,
    )
    .await;
    Ok(Json(view(&state, group).await?))
}

/// Remove a member (admin)
///
/// A membership from the identity provider's claim is refused without
/// `force=true`: the member's next login would restore it.
#[utoipa::path(
    delete,
    operation_id = "removeGroupMember",
    path = "/api/v1/groups/{id}/members/{user_id}",
    tag = "groups",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = String, Path, description = "The group's id or name"),
        ("user_id" = String, Path, description = "The user's id"),
        ClaimForce,
    ),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such group, or the user is not in it", body = ErrorBody),
        (status = 409, description = "The membership comes from the identity provider (and `force` was not given)", body = ErrorBody),
    ),
)]
pub async fn remove_member(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    ApiPath((id, user_id)): ApiPath<(String, UserId)>,
    ApiQuery(query): ApiQuery<ClaimForce>,
) -> ApiResult<Json<GroupView>> {
    let group = find(&state, &id).await?;
    let source = state
        .store
        .membership(&group.id, &user_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound("no such member: the user is not in this group".into())
        })?;
    let username = state
        .store
        .get_user(&user_id)
        .await?
        .map_or_else(|| user_id.to_string(), |u| u.username);
    if source == GroupSource::Oidc && !query.force {
        return Err(ApiError::Conflict(format!(
            "{username} is in {:?} by the identity provider's groups claim: their next login \
             adds them back. Remove them from the group at the provider, or remove them here \
             with ?force=true until their next login",
            group.name
        )));
    }
    state.store.remove_group_member(&group.id, &user_id).await?;
    let detail = json!({"user": username, "source": source.as_str(), "force": query.force});
    audit(
        &state,
        &admin,
        client,
        "group.member_remove",
        &group.name,
        detail,
    )
    .await;
    Ok(Json(view(&state, group).await?))
}
