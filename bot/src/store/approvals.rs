//! Approval requests and their life cycle.
//!
//! ```text
//!            ┌──> denied
//! pending ───┼──> expired
//!            ├──> failed
//!            └──> approved ──> executing ──┬──> executed
//!                                          └──> failed
//! ```
//!
//! Every transition is one conditional `UPDATE … WHERE id = $id AND state = $from`; the caller
//! whose update changed a row made the transition, everyone else gets `false`. That is what makes
//! "the command runs exactly once" hold with concurrent clicks and several bot replicas: only the
//! caller that wins [`Store::claim_execution`] executes.

use jiff::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Pool, Result, Store, StoreError, on_pool, on_pool_writing, timestamp};
use crate::chat::MessageRef;

/// Where an approval request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    /// Claimed by one caller of [`Store::claim_execution`], which is running the command.
    Executing,
    Executed,
    Denied,
    Expired,
    Failed,
}

impl ApprovalState {
    pub const ALL: [ApprovalState; 7] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Executing,
        ApprovalState::Executed,
        ApprovalState::Denied,
        ApprovalState::Expired,
        ApprovalState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Executing => "executing",
            ApprovalState::Executed => "executed",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalState> {
        ApprovalState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves this state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ApprovalState::Executed
                | ApprovalState::Denied
                | ApprovalState::Expired
                | ApprovalState::Failed
        )
    }

    /// Whether the life cycle allows going from `self` to `to`.
    pub fn can_become(self, to: ApprovalState) -> bool {
        use ApprovalState::*;
        matches!(
            (self, to),
            (Pending, Approved | Denied | Expired | Failed)
                | (Approved, Executing | Failed)
                | (Executing, Executed | Failed)
        )
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an approval needs, as stored (mirrors `opsbot_policies::Requirement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequirement {
    /// Roles an approver must hold one of.
    pub roles: Vec<String>,
    /// How many distinct approvers are needed.
    pub count: u32,
    pub ttl_seconds: u64,
    /// Whether the requester may approve their own request.
    pub allow_self: bool,
}

impl From<&opsbot_policies::Requirement> for ApprovalRequirement {
    fn from(r: &opsbot_policies::Requirement) -> Self {
        ApprovalRequirement {
            roles: r.roles.clone(),
            count: r.count,
            ttl_seconds: r.ttl.as_secs(),
            allow_self: r.allow_self,
        }
    }
}

impl From<&ApprovalRequirement> for opsbot_policies::Requirement {
    fn from(r: &ApprovalRequirement) -> Self {
        opsbot_policies::Requirement {
            roles: r.roles.clone(),
            count: r.count,
            ttl: std::time::Duration::from_secs(r.ttl_seconds),
            allow_self: r.allow_self,
        }
    }
}

/// A request to persist; [`Store::create_approval`] assigns the id and sets it pending.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    /// Subject of the person asking (`slack:U123`).
    pub requester: String,
    /// Group / role subjects the platform reported for them (needed to evaluate the policy again
    /// before executing).
    pub requester_groups: Vec<String>,
    pub platform: String,
    pub channel: String,
    /// The command text as typed (`scale api 5 -n production`).
    pub command: String,
    /// The rule that asked for approval.
    pub rule: String,
    pub requirement: ApprovalRequirement,
    /// Anything else the engine wants back later (e.g. the parsed command), as JSON.
    pub context: serde_json::Value,
    pub created: Timestamp,
    pub expires: Timestamp,
}

/// One person who approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub subject: String,
    /// The groups they held when they voted (for the policy check when it runs); `None` for a
    /// vote cast before opsbot recorded them.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    pub at: Timestamp,
}

/// A stored approval request.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// Short and typable, e.g. `7f3k2q`.
    pub id: String,
    pub requester: String,
    pub requester_groups: Vec<String>,
    pub platform: String,
    pub channel: String,
    pub command: String,
    pub rule: String,
    pub requirement: ApprovalRequirement,
    pub context: serde_json::Value,
    pub state: ApprovalState,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// When the state last changed.
    pub updated: Timestamp,
    /// The result or error text once executed / failed.
    pub outcome: Option<String>,
    /// The approval card, once posted.
    pub card: Option<MessageRef>,
    /// Who approved so far, in order.
    pub approvers: Vec<Approver>,
}

impl Approval {
    /// Whether enough distinct people approved.
    pub fn has_enough_approvals(&self) -> bool {
        self.approvers.len() >= usize::try_from(self.requirement.count).unwrap_or(usize::MAX)
    }
}

/// The result of [`Store::add_approval`].
#[derive(Debug, Clone, PartialEq)]
pub struct VoteOutcome {
    /// `true` if this approver was recorded now; `false` if they had approved already, the
    /// request is no longer pending, or it is past its expiry.
    pub added: bool,
    /// The request after the vote (with every approver so far).
    pub approval: Approval,
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    id: String,
    requester: String,
    requester_groups: String,
    platform: String,
    channel: String,
    command: String,
    rule: String,
    requirement: String,
    context: String,
    state: String,
    created_ms: i64,
    expires_ms: i64,
    updated_ms: i64,
    outcome: Option<String>,
    card_platform: Option<String>,
    card_channel: Option<String>,
    card_message: Option<String>,
}

macro_rules! approval_columns {
    () => {
        "id, requester, requester_groups, platform, channel, command, rule, requirement, \
         context, state, created_ms, expires_ms, updated_ms, outcome, card_platform, \
         card_channel, card_message"
    };
}

#[derive(sqlx::FromRow)]
struct VoteRow {
    approver: String,
    approver_groups: Option<String>,
    at_ms: i64,
}

impl ApprovalRow {
    fn into_approval(self, votes: Vec<VoteRow>) -> Result<Approval> {
        let id = self.id;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt {
            table: "approvals",
            message: format!("approval {id}: {what}: {e}"),
        };
        let requester_groups = serde_json::from_str(&self.requester_groups)
            .map_err(|e| corrupt("requester_groups", &e))?;
        let requirement =
            serde_json::from_str(&self.requirement).map_err(|e| corrupt("requirement", &e))?;
        let context = serde_json::from_str(&self.context).map_err(|e| corrupt("context", &e))?;
        let state = ApprovalState::parse(&self.state)
            .ok_or_else(|| corrupt("state", &format_args!("unknown state {:?}", self.state)))?;
        let card = match (self.card_platform, self.card_channel, self.card_message) {
            (Some(platform), Some(channel), Some(id)) => Some(MessageRef {
                platform,
                channel,
                id,
            }),
            _ => None,
        };
        let approvers = votes
            .into_iter()
            .map(|v| {
                Ok(Approver {
                    groups: v
                        .approver_groups
                        .map(|g| serde_json::from_str(&g))
                        .transpose()
                        .map_err(|e| corrupt("approver_groups", &e))?,
                    subject: v.approver,
                    at: timestamp("approval_votes", v.at_ms)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Approval {
            requester: self.requester,
            requester_groups,
            platform: self.platform,
            channel: self.channel,
            command: self.command,
            rule: self.rule,
            requirement,
            context,
            state,
            created: timestamp("approvals", self.created_ms)?,
            expires: timestamp("approvals", self.expires_ms)?,
            updated: timestamp("approvals", self.updated_ms)?,
            outcome: self.outcome,
            card,
            approvers,
            id,
        })
    }
}

/// Letters and digits that cannot be mistaken for each other (no 0/o, 1/l/i).
const ID_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const ID_LEN: usize = 6;
const ID_ATTEMPTS: usize = 8;

fn random_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

/// Adds `$approver`'s vote to the pending, unexpired request `$id` if it still needs votes, in an
/// open transaction (`$lock` locks the request's row where the backend needs it). Yields
/// whether the vote was added.
macro_rules! vote_in_tx {
    ($tx:ident, $id:expr, $approver:expr, $groups:expr, $now:expr, $lock:literal) => {{
        let open: Option<(String,)> = sqlx::query_as(concat!(
            "SELECT requirement FROM approvals WHERE id = $1 AND state = 'pending' \
             AND expires_ms > $2",
            $lock
        ))
        .bind($id)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        match open {
            None => false,
            Some((requirement,)) => {
                let needed = serde_json::from_str::<ApprovalRequirement>(&requirement)
                    .map(|r| i64::from(r.count))
                    .map_err(|e| StoreError::Corrupt {
                        table: "approvals",
                        message: format!("{}: requirement: {e}", $id),
                    })?;
                let (votes,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM approval_votes WHERE approval_id = $1")
                        .bind($id)
                        .fetch_one(&mut *$tx)
                        .await?;
                votes < needed
                    && sqlx::query(
                        "INSERT INTO approval_votes (approval_id, approver, approver_groups, at_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (approval_id, approver) DO NOTHING",
                    )
                    .bind($id)
                    .bind($approver)
                    .bind($groups)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected()
                        == 1
            }
        }
    }};
}

impl Store {
    /// Persists a new pending approval request and returns it with its fresh id.
    pub async fn create_approval(&self, new: NewApproval) -> Result<Approval> {
        let groups = serde_json::Value::from(new.requester_groups.clone()).to_string();
        let requirement = serde_json::to_value(&new.requirement)
            .unwrap_or(serde_json::Value::Null)
            .to_string();
        let context = new.context.to_string();
        let created = new.created.as_millisecond();
        for _ in 0..ID_ATTEMPTS {
            let id = random_id();
            let inserted = on_pool_writing!(self, |pool| {
                sqlx::query(concat!(
                    "INSERT INTO approvals (",
                    approval_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                     NULL, NULL, NULL, NULL) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(&id)
                .bind(&new.requester)
                .bind(&groups)
                .bind(&new.platform)
                .bind(&new.channel)
                .bind(&new.command)
                .bind(&new.rule)
                .bind(&requirement)
                .bind(&context)
                .bind(ApprovalState::Pending.as_str())
                .bind(created)
                .bind(new.expires.as_millisecond())
                .bind(created)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if inserted == 1 {
                return self.get(&id).await?.ok_or(StoreError::NotFound(id));
            }
        }
        Err(StoreError::IdsExhausted)
    }

    /// The approval with `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Approval>> {
        let row: Option<ApprovalRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                approval_columns!(),
                " FROM approvals WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let Some(row) = row else { return Ok(None) };
        let votes = self.votes(id).await?;
        row.into_approval(votes).map(Some)
    }

    /// Records `approver` (holding `groups`) approving `id`, if it is still pending, not past
    /// its expiry, and has fewer votes than it needs (votes stop at the count, however many
    /// arrive at once). Idempotent per approver.
    /// Eligibility (roles, self-approval) is the caller's business: check it first.
    /// Reaching the count does not change the state; the caller then calls
    /// [`Store::try_transition`] to `Approved`.
    pub async fn add_approval(
        &self,
        id: &str,
        approver: &str,
        groups: &[String],
    ) -> Result<VoteOutcome> {
        let now = Timestamp::now().as_millisecond();
        let groups = serde_json::Value::from(groups.to_vec()).to_string();
        // The request is locked while its votes are counted, so votes stop at the number
        // needed however many arrive at once (also from several replicas).
        let added = match &self.pool {
            Pool::Sqlite(pool) => {
                let _turn = self.turn.lock().await;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let added = vote_in_tx!(tx, id, approver, &groups, now, "");
                tx.commit().await?;
                added
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let added = vote_in_tx!(tx, id, approver, &groups, now, " FOR UPDATE");
                tx.commit().await?;
                added
            }
        };
        let approval = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        Ok(VoteOutcome { added, approval })
    }

    /// Moves `id` from `from` to `to` if it is in `from` now. Returns `true` for the one caller
    /// that made the change, `false` for everyone else (or if `id` does not exist).
    /// Errors if the life cycle has no such transition.
    pub async fn try_transition(
        &self,
        id: &str,
        from: ApprovalState,
        to: ApprovalState,
    ) -> Result<bool> {
        self.transition(id, from, to, None).await
    }

    /// Claims the right to execute an approved request (`approved` → `executing`). Exactly one
    /// caller gets `true`; only that caller runs the command and then calls [`Store::finish`].
    pub async fn claim_execution(&self, id: &str) -> Result<bool> {
        self.transition(id, ApprovalState::Approved, ApprovalState::Executing, None)
            .await
    }

    /// Records how the execution ended (`executing` → `executed` or `failed`), with the result
    /// or error text. Returns whether the approval was executing.
    pub async fn finish(&self, id: &str, to: ApprovalState, outcome: &str) -> Result<bool> {
        self.transition(id, ApprovalState::Executing, to, Some(outcome))
            .await
    }

    /// Marks a request failed before it ran (e.g. the policy now denies it), from `pending` or
    /// `approved`, with the reason. Returns whether this caller made the change.
    pub async fn fail(&self, id: &str, from: ApprovalState, reason: &str) -> Result<bool> {
        self.transition(id, from, ApprovalState::Failed, Some(reason))
            .await
    }

    async fn transition(
        &self,
        id: &str,
        from: ApprovalState,
        to: ApprovalState,
        outcome: Option<&str>,
    ) -> Result<bool> {
        if !from.can_become(to) {
            return Err(StoreError::InvalidTransition { from, to });
        }
        let now = Timestamp::now().as_millisecond();
        let changed = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE approvals SET state = $1, updated_ms = $2, outcome = COALESCE($3, outcome) \
                 WHERE id = $4 AND state = $5",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(outcome)
            .bind(id)
            .bind(from.as_str())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Stores where the approval card was posted, so it can be updated later (also after a
    /// restart).
    pub async fn set_card(&self, id: &str, card: &MessageRef) -> Result<()> {
        let changed = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE approvals SET card_platform = $1, card_channel = $2, card_message = $3 \
                 WHERE id = $4",
            )
            .bind(&card.platform)
            .bind(&card.channel)
            .bind(&card.id)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Every request in `state`, oldest first.
    pub async fn approvals_in(&self, state: ApprovalState) -> Result<Vec<Approval>> {
        let rows: Vec<ApprovalRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                approval_columns!(),
                " FROM approvals WHERE state = $1 ORDER BY created_ms, id"
            ))
            .bind(state.as_str())
            .fetch_all(pool)
            .await?
        });
        self.with_votes(rows).await
    }

    /// Every pending request, oldest first.
    pub async fn pending(&self) -> Result<Vec<Approval>> {
        self.approvals_in(ApprovalState::Pending).await
    }

    /// Pending requests whose expiry is at or before `now`, oldest first. (They stay pending
    /// until someone wins `try_transition(id, Pending, Expired)`.)
    pub async fn expired_pending(&self, now: Timestamp) -> Result<Vec<Approval>> {
        let rows: Vec<ApprovalRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                approval_columns!(),
                " FROM approvals WHERE state = 'pending' AND expires_ms <= $1 \
                 ORDER BY created_ms, id"
            ))
            .bind(now.as_millisecond())
            .fetch_all(pool)
            .await?
        });
        self.with_votes(rows).await
    }

    /// Attaches each row's votes.
    async fn with_votes(&self, rows: Vec<ApprovalRow>) -> Result<Vec<Approval>> {
        let mut approvals = Vec::with_capacity(rows.len());
        for row in rows {
            let votes = self.votes(&row.id).await?;
            approvals.push(row.into_approval(votes)?);
        }
        Ok(approvals)
    }

    async fn votes(&self, id: &str) -> Result<Vec<VoteRow>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT approver, approver_groups, at_ms FROM approval_votes \
                 WHERE approval_id = $1 ORDER BY at_ms, approver",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }
}
