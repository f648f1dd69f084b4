//! What `oxctl` prints for each response, in etcdctl 3.4's four output formats: `simple`
//! (lines meant for people and shell scripts), `json` (Go's encoding of etcd's structs),
//! `fields` (`"Name" : value` lines) and `table` (member and endpoint listings only).
//!
//! Every function returns the text for stdout (or an [`CtlError`] when the format does not
//! apply, as etcdctl refuses it); none of them talks to a server.

use super::json::{self, Obj, go_quote};
use super::table::{humanize_bytes, render};
use super::{CtlError, EXIT_BAD_FEATURE};
use oxcd::pb::etcdserverpb as pb;
use oxcd::pb::mvccpb;

/// `-w` / `--write-out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
        }
    }
}

/// How to print: the format, `--hex`, and `--print-value-only` (get and watch).
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub value_only: bool,
}

type Printed = Result<String, CtlError>;

fn unsupported(format: Format) -> CtlError {
    CtlError::new(
        EXIT_BAD_FEATURE,
        format!("{} not supported as output format", format.name()),
    )
}

/// A lease's ID and TTL with the header they came with (grant and keep-alive answers).
pub struct LeaseTtl {
    pub header: pb::ResponseHeader,
    pub id: i64,
    pub ttl: i64,
}

/// One endpoint's health, as `endpoint health` measures it.
pub struct Health {
    pub endpoint: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// What a watch hands its printer: one response.
pub struct WatchOut<'a> {
    pub header: pb::ResponseHeader,
    pub events: &'a [mvccpb::Event],
    pub compact_revision: i64,
    pub canceled: bool,
    pub created: bool,
}

fn header_json(h: &pb::ResponseHeader) -> String {
    header_fields(&mut Obj::new(), h).end()
}

/// The header's fields, into `o` (Go promotes an embedded header's fields this way).
fn header_fields<'o>(o: &'o mut Obj, h: &pb::ResponseHeader) -> &'o mut Obj {
    o.int_omit("cluster_id", h.cluster_id)
        .int_omit("member_id", h.member_id)
        .int_omit("revision", h.revision)
        .int_omit("raft_term", h.raft_term)
}

fn opt_header(o: &mut Obj, h: &Option<pb::ResponseHeader>) {
    if let Some(h) = h {
        o.raw("header", &header_json(h));
    }
}

fn kv_json(kv: &mvccpb::KeyValue) -> String {
    Obj::new()
        .bytes_omit("key", &kv.key)
        .int_omit("create_revision", kv.create_revision)
        .int_omit("mod_revision", kv.mod_revision)
        .int_omit("version", kv.version)
        .bytes_omit("value", &kv.value)
        .int_omit("lease", kv.lease)
        .end()
}

fn strings_json(items: &[String]) -> Vec<String> {
    items.iter().map(|s| json::string(s)).collect()
}

fn kvs_json(kvs: &[mvccpb::KeyValue]) -> Vec<String> {
    kvs.iter().map(kv_json).collect()
}

fn range_json(r: &pb::RangeResponse) -> String {
    let mut o = Obj::new();
    opt_header(&mut o, &r.header);
    o.list_omit("kvs", &kvs_json(&r.kvs))
        .bool_omit("more", r.more)
        .int_omit("count", r.count)
        .end()
}

fn put_json(r: &pb::PutResponse) -> String {
    let mut o = Obj::new();
    opt_header(&mut o, &r.header);
    if let Some(kv) = &r.prev_kv {
        o.raw("prev_kv", &kv_json(kv));
    }
    o.end()
}

fn del_json(r: &pb::DeleteRangeResponse) -> String {
    let mut o = Obj::new();
    opt_header(&mut o, &r.header);
    o.int_omit("deleted", r.deleted)
        .list_omit("prev_kvs", &kvs_json(&r.prev_kvs))
        .end()
}

fn txn_json(r: &pb::TxnResponse) -> String {
    use pb::response_op::Response;
    let mut o = Obj::new();
    opt_header(&mut o, &r.header);
    o.bool_omit("succeeded", r.succeeded);
    let ops: Vec<String> = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(r)) => {
                    Obj::new().raw("ResponseRange", &range_json(r)).end()
                }
                Some(Response::ResponsePut(r)) => Obj::new().raw("ResponsePut", &put_json(r)).end(),
                Some(Response::ResponseDeleteRange(r)) => {
                    Obj::new().raw("ResponseDeleteRange", &del_json(r)).end()
                }
                Some(Response::ResponseTxn(r)) => Obj::new().raw("ResponseTxn", &txn_json(r)).end(),
                None => "null".to_string(),
            };
            Obj::new().raw("Response", &inner).end()
        })
        .collect();
    o.list_omit("responses", &ops).end()
}

fn event_json(e: &mvccpb::Event) -> String {
    let mut o = Obj::new();
    o.int_omit("type", e.r#type);
    if let Some(kv) = &e.kv {
        o.raw("kv", &kv_json(kv));
    }
    if let Some(kv) = &e.prev_kv {
        o.raw("prev_kv", &kv_json(kv));
    }
    o.end()
}

impl Printer {
    fn kv(&self, kv: &mvccpb::KeyValue) -> String {
        let show = |b: &[u8]| {
            if self.hex {
                b.iter().map(|x| format!("\\x{x:02x}")).collect()
            } else {
                String::from_utf8_lossy(b).into_owned()
            }
        };
        if self.value_only {
            format!("{}\n", show(&kv.value))
        } else {
            format!("{}\n{}\n", show(&kv.key), show(&kv.value))
        }
    }

    fn fields_header(h: &Option<pb::ResponseHeader>) -> String {
        let h = h.unwrap_or_default();
        format!(
            "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
            h.cluster_id, h.member_id, h.revision, h.raft_term
        )
    }

    fn fields_kv(prefix: &str, kv: &mvccpb::KeyValue) -> String {
        format!(
            "\"{prefix}Key\" : {}\n\"{prefix}CreateRevision\" : {}\n\"{prefix}ModRevision\" : {}\n\
             \"{prefix}Version\" : {}\n\"{prefix}Value\" : {}\n\"{prefix}Lease\" : {}\n",
            go_quote(&kv.key),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            go_quote(&kv.value),
            kv.lease
        )
    }

    pub fn get(&self, r: &pb::RangeResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => r.kvs.iter().map(|kv| self.kv(kv)).collect(),
            Format::Json => range_json(r) + "\n",
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                for kv in &r.kvs {
                    s += &Self::fields_kv("", kv);
                }
                s + &format!("\"More\" : {}\n\"Count\" : {}\n", r.more, r.count)
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn put(&self, r: &pb::PutResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => {
                let mut s = "OK\n".to_string();
                if let Some(kv) = &r.prev_kv {
                    s += &self.kv(kv);
                }
                s
            }
            Format::Json => put_json(r) + "\n",
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                if let Some(kv) = &r.prev_kv {
                    s += &Self::fields_kv("Prev", kv);
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn del(&self, r: &pb::DeleteRangeResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => {
                let mut s = format!("{}\n", r.deleted);
                for kv in &r.prev_kvs {
                    s += &self.kv(kv);
                }
                s
            }
            Format::Json => del_json(r) + "\n",
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                s += &format!("\"Deleted\" : {}\n", r.deleted);
                for kv in &r.prev_kvs {
                    s += &Self::fields_kv("Prev", kv);
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn txn(&self, r: &pb::TxnResponse) -> Printed {
        use pb::response_op::Response;
        Ok(match self.format {
            Format::Simple => {
                let mut s = if r.succeeded {
                    "SUCCESS\n"
                } else {
                    "FAILURE\n"
                }
                .to_string();
                for op in &r.responses {
                    s.push('\n');
                    s += &match &op.response {
                        Some(Response::ResponseRange(r)) => self.get(r)?,
                        Some(Response::ResponsePut(r)) => self.put(r)?,
                        Some(Response::ResponseDeleteRange(r)) => self.del(r)?,
                        other => format!("unexpected response {other:?}\n"),
                    };
                }
                s
            }
            Format::Json => txn_json(r) + "\n",
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                s += &format!("\"Succeeded\" : {}\n", r.succeeded);
                for op in &r.responses {
                    s += &match &op.response {
                        Some(Response::ResponseRange(r)) => self.get(r)?,
                        Some(Response::ResponsePut(r)) => self.put(r)?,
                        Some(Response::ResponseDeleteRange(r)) => self.del(r)?,
                        other => format!(
                            "\"Unknown\" : {}\n",
                            go_quote(format!("{other:?}").as_bytes())
                        ),
                    };
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn watch(&self, w: &WatchOut) -> Printed {
        let kind = |e: &mvccpb::Event| if e.r#type == 1 { "DELETE" } else { "PUT" };
        Ok(match self.format {
            Format::Simple => {
                let mut s = String::new();
                for e in w.events {
                    s += kind(e);
                    s.push('\n');
                    if let Some(kv) = &e.prev_kv {
                        s += &self.kv(kv);
                    }
                    s += &self.kv(&e.kv.clone().unwrap_or_default());
                }
                s
            }
            Format::Json => {
                let events: Vec<String> = w.events.iter().map(event_json).collect();
                let events = if events.is_empty() {
                    "null".to_string()
                } else {
                    json::list(&events)
                };
                Obj::new()
                    .raw("Header", &header_json(&w.header))
                    .raw("Events", &events)
                    .int("CompactRevision", w.compact_revision)
                    .bool("Canceled", w.canceled)
                    .bool("Created", w.created)
                    .end()
                    + "\n"
            }
            Format::Fields => {
                let mut s = Self::fields_header(&Some(w.header));
                for e in w.events {
                    s += &format!("\"Type\" : {}\n", kind(e));
                    if let Some(kv) = &e.prev_kv {
                        s += &Self::fields_kv("Prev", kv);
                    }
                    s += &Self::fields_kv("", &e.kv.clone().unwrap_or_default());
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn grant(&self, r: &LeaseTtl) -> Printed {
        Ok(match self.format {
            Format::Simple => format!("lease {:016x} granted with TTL({}s)\n", r.id, r.ttl),
            Format::Json => {
                let mut o = Obj::new();
                header_fields(&mut o, &r.header)
                    .int("ID", r.id)
                    .int("TTL", r.ttl)
                    .str("Error", "")
                    .end()
                    + "\n"
            }
            Format::Fields => {
                Self::fields_header(&Some(r.header))
                    + &format!("\"ID\" : {}\n\"TTL\" : {}\n", r.id, r.ttl)
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn keep_alive(&self, r: &LeaseTtl) -> Printed {
        Ok(match self.format {
            Format::Simple => format!("lease {:016x} keepalived with TTL({})\n", r.id, r.ttl),
            Format::Json => {
                let mut o = Obj::new();
                header_fields(&mut o, &r.header)
                    .int("ID", r.id)
                    .int("TTL", r.ttl)
                    .end()
                    + "\n"
            }
            Format::Fields => {
                Self::fields_header(&Some(r.header))
                    + &format!("\"ID\" : {}\n\"TTL\" : {}\n", r.id, r.ttl)
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn revoke(&self, id: i64, r: &pb::LeaseRevokeResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => format!("lease {id:016x} revoked\n"),
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.end() + "\n"
            }
            Format::Fields => Self::fields_header(&r.header),
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn time_to_live(&self, r: &pb::LeaseTimeToLiveResponse, keys: bool) -> Printed {
        Ok(match self.format {
            Format::Simple => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    return Ok(format!("lease {:016x} already expired\n", r.id));
                }
                let mut s = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    r.id, r.granted_ttl, r.ttl
                );
                if keys {
                    let names: Vec<String> = r
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    s += &format!(", attached keys([{}])", names.join(" "));
                }
                s + "\n"
            }
            Format::Json => {
                let keys = if r.keys.is_empty() {
                    "null".to_string()
                } else {
                    let items: Vec<String> = r
                        .keys
                        .iter()
                        .map(|k| format!("\"{}\"", json::base64(k)))
                        .collect();
                    json::list(&items)
                };
                let mut o = Obj::new();
                header_fields(&mut o, &r.header.unwrap_or_default())
                    .int("id", r.id)
                    .int("ttl", r.ttl)
                    .int("granted-ttl", r.granted_ttl)
                    .raw("keys", &keys)
                    .end()
                    + "\n"
            }
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                s += &format!(
                    "\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}\n",
                    r.id, r.ttl, r.granted_ttl
                );
                for k in &r.keys {
                    s += &format!("\"Key\" : {}\n", go_quote(k));
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn leases(&self, r: &pb::LeaseLeasesResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => {
                let mut s = format!("found {} leases\n", r.leases.len());
                for l in &r.leases {
                    s += &format!("{:016x}\n", l.id);
                }
                s
            }
            Format::Json => {
                let items: Vec<String> = r
                    .leases
                    .iter()
                    .map(|l| Obj::new().int("id", l.id).end())
                    .collect();
                let mut o = Obj::new();
                header_fields(&mut o, &r.header.unwrap_or_default())
                    .raw("leases", &json::list(&items))
                    .end()
                    + "\n"
            }
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                for l in &r.leases {
                    s += &format!("\"ID\" : {}\n", l.id);
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    fn member_rows(members: &[pb::Member]) -> Vec<Vec<String>> {
        members
            .iter()
            .map(|m| {
                vec![
                    format!("{:x}", m.id),
                    if m.name.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    }
                    .to_string(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect()
    }

    fn member_json(m: &pb::Member) -> String {
        let quoted = |urls: &[String]| urls.iter().map(|u| json::string(u)).collect::<Vec<_>>();
        Obj::new()
            .int_omit("ID", m.id)
            .str_omit("name", &m.name)
            .list_omit("peerURLs", &quoted(&m.peer_ur_ls))
            .list_omit("clientURLs", &quoted(&m.client_ur_ls))
            .bool_omit("isLearner", m.is_learner)
            .end()
    }

    fn members_json(
        header: &Option<pb::ResponseHeader>,
        member: Option<&pb::Member>,
        members: &[pb::Member],
    ) -> String {
        let mut o = Obj::new();
        opt_header(&mut o, header);
        if let Some(m) = member {
            o.raw("member", &Self::member_json(m));
        }
        let list: Vec<String> = members.iter().map(Self::member_json).collect();
        o.list_omit("members", &list).end() + "\n"
    }

    pub fn member_list(&self, r: &pb::MemberListResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => Self::member_rows(&r.members)
                .iter()
                .map(|row| row.join(", ") + "\n")
                .collect(),
            Format::Json => Self::members_json(&r.header, None, &r.members),
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                for m in &r.members {
                    s += &format!(
                        "\"ID\" : {}\n\"Name\" : {}\n",
                        m.id,
                        go_quote(m.name.as_bytes())
                    );
                    for u in &m.peer_ur_ls {
                        s += &format!("\"PeerURL\" : {}\n", go_quote(u.as_bytes()));
                    }
                    for u in &m.client_ur_ls {
                        s += &format!("\"ClientURL\" : {}\n", go_quote(u.as_bytes()));
                    }
                    s += &format!("\"IsLearner\" : {}\n\n", m.is_learner);
                }
                s
            }
            Format::Table => render(
                &[
                    "ID",
                    "Status",
                    "Name",
                    "Peer Addrs",
                    "Client Addrs",
                    "Is Learner",
                ],
                &Self::member_rows(&r.members),
            ),
        })
    }

    /// `member add` / `remove` / `update` / `promote`: `verb` says which.
    pub fn member_change(
        &self,
        verb: &str,
        id: u64,
        header: &Option<pb::ResponseHeader>,
        member: Option<&pb::Member>,
        members: &[pb::Member],
    ) -> Printed {
        let cluster = header.map_or(0, |h| h.cluster_id);
        Ok(match self.format {
            Format::Simple => format!("Member {id:16x} {verb} cluster {cluster:16x}\n"),
            Format::Json => Self::members_json(header, member, members),
            Format::Fields => {
                let mut s = Self::fields_header(header);
                if let Some(m) = member {
                    s += &format!(
                        "\"Member.ID\" : {}\n\"Member.Name\" : {}\n",
                        m.id,
                        go_quote(m.name.as_bytes())
                    );
                    for u in &m.peer_ur_ls {
                        s += &format!("\"Member.PeerURL\" : {}\n", go_quote(u.as_bytes()));
                    }
                    for u in &m.client_ur_ls {
                        s += &format!("\"Member.ClientURL\" : {}\n", go_quote(u.as_bytes()));
                    }
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn endpoint_health(&self, list: &[Health]) -> Result<(String, String), CtlError> {
        // Simple output goes to stderr, as etcdctl's does.
        Ok(match self.format {
            Format::Simple => {
                let err = list
                    .iter()
                    .map(|h| {
                        if h.error.is_empty() {
                            format!(
                                "{} is healthy: successfully committed proposal: took = {}\n",
                                h.endpoint, h.took
                            )
                        } else {
                            format!(
                                "{} is unhealthy: failed to commit proposal: {}\n",
                                h.endpoint, h.error
                            )
                        }
                    })
                    .collect();
                (String::new(), err)
            }
            Format::Json => {
                let items: Vec<String> = list
                    .iter()
                    .map(|h| {
                        Obj::new()
                            .str("endpoint", &h.endpoint)
                            .bool("health", h.health)
                            .str("took", &h.took)
                            .str_omit("error", &h.error)
                            .end()
                    })
                    .collect();
                (json::list(&items) + "\n", String::new())
            }
            Format::Fields => (
                list.iter()
                    .map(|h| {
                        format!(
                            "\"Endpoint\" : {}\n\"Health\" : {}\n\"Took\" : {}\n\"Error\" : {}\n\n",
                            go_quote(h.endpoint.as_bytes()),
                            h.health,
                            h.took,
                            h.error
                        )
                    })
                    .collect(),
                String::new(),
            ),
            Format::Table => {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|h| {
                        vec![
                            h.endpoint.clone(),
                            h.health.to_string(),
                            h.took.clone(),
                            h.error.clone(),
                        ]
                    })
                    .collect();
                (
                    render(&["endpoint", "health", "took", "error"], &rows),
                    String::new(),
                )
            }
        })
    }

    fn status_row(ep: &str, s: &pb::StatusResponse) -> Vec<String> {
        let h = s.header.unwrap_or_default();
        vec![
            ep.to_string(),
            format!("{:x}", h.member_id),
            s.version.clone(),
            humanize_bytes(s.db_size.max(0) as u64),
            (s.leader == h.member_id).to_string(),
            s.is_learner.to_string(),
            s.raft_term.to_string(),
            s.raft_index.to_string(),
            s.raft_applied_index.to_string(),
            s.errors.join(", "),
        ]
    }

    pub fn endpoint_status(&self, list: &[(String, pb::StatusResponse)]) -> Printed {
        Ok(match self.format {
            Format::Simple => list
                .iter()
                .map(|(ep, s)| Self::status_row(ep, s).join(", ") + "\n")
                .collect(),
            Format::Json => {
                let items: Vec<String> = list
                    .iter()
                    .map(|(ep, s)| {
                        let mut st = Obj::new();
                        opt_header(&mut st, &s.header);
                        let errors: Vec<String> = s.errors.iter().map(|e| json::string(e)).collect();
                        let st = st
                            .str_omit("version", &s.version)
                            .int_omit("dbSize", s.db_size)
                            .int_omit("leader", s.leader)
                            .int_omit("raftIndex", s.raft_index)
                            .int_omit("raftTerm", s.raft_term)
                            .int_omit("raftAppliedIndex", s.raft_applied_index)
                            .list_omit("errors", &errors)
                            .int_omit("dbSizeInUse", s.db_size_in_use)
                            .bool_omit("isLearner", s.is_learner)
                            .end();
                        Obj::new().str("Endpoint", ep).raw("Status", &st).end()
                    })
                    .collect();
                json::list(&items) + "\n"
            }
            Format::Fields => list
                .iter()
                .map(|(ep, s)| {
                    Self::fields_header(&s.header)
                        + &format!(
                            "\"Version\" : {}\n\"DBSize\" : {}\n\"Leader\" : {}\n\"IsLearner\" : {}\n\
                             \"RaftIndex\" : {}\n\"RaftTerm\" : {}\n\"RaftAppliedIndex\" : {}\n\
                             \"Errors\" : [{}]\n\"Endpoint\" : {}\n\n",
                            go_quote(s.version.as_bytes()),
                            s.db_size,
                            s.leader,
                            s.is_learner,
                            s.raft_index,
                            s.raft_term,
                            s.raft_applied_index,
                            s.errors.join(" "),
                            go_quote(ep.as_bytes())
                        )
                })
                .collect(),
            Format::Table => {
                let rows: Vec<Vec<String>> = list.iter().map(|(ep, s)| Self::status_row(ep, s)).collect();
                render(
                    &[
                        "endpoint",
                        "ID",
                        "version",
                        "db size",
                        "is leader",
                        "is learner",
                        "raft term",
                        "raft index",
                        "raft applied index",
                        "errors",
                    ],
                    &rows,
                )
            }
        })
    }

    pub fn endpoint_hashkv(&self, list: &[(String, pb::HashKvResponse)]) -> Printed {
        Ok(match self.format {
            Format::Simple => list
                .iter()
                .map(|(ep, h)| format!("{ep}, {}\n", h.hash))
                .collect(),
            Format::Json => {
                let items: Vec<String> = list
                    .iter()
                    .map(|(ep, h)| {
                        let mut inner = Obj::new();
                        opt_header(&mut inner, &h.header);
                        let inner = inner
                            .int_omit("hash", h.hash)
                            .int_omit("compact_revision", h.compact_revision)
                            .end();
                        Obj::new().str("Endpoint", ep).raw("HashKV", &inner).end()
                    })
                    .collect();
                json::list(&items) + "\n"
            }
            Format::Fields => list
                .iter()
                .map(|(ep, h)| {
                    Self::fields_header(&h.header)
                        + &format!(
                            "\"Endpoint\" : {}\n\"Hash\" : {}\n\n",
                            go_quote(ep.as_bytes()),
                            h.hash
                        )
                })
                .collect(),
            Format::Table => {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|(ep, h)| vec![ep.clone(), h.hash.to_string()])
                    .collect();
                render(&["endpoint", "hash"], &rows)
            }
        })
    }

    pub fn alarms(&self, r: &pb::AlarmResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => r
                .alarms
                .iter()
                .map(|a| {
                    let name = match a.alarm {
                        1 => "NOSPACE",
                        2 => "CORRUPT",
                        _ => "NONE",
                    };
                    format!("memberID:{} alarm:{name} \n", a.member_id)
                })
                .collect(),
            Format::Json => {
                let items: Vec<String> = r
                    .alarms
                    .iter()
                    .map(|a| {
                        Obj::new()
                            .int_omit("memberID", a.member_id)
                            .int_omit("alarm", a.alarm)
                            .end()
                    })
                    .collect();
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.list_omit("alarms", &items).end() + "\n"
            }
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                for a in &r.alarms {
                    s += &format!(
                        "\"MemberID\" : {}\n\"AlarmType\" : {}\n",
                        a.member_id, a.alarm
                    );
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn move_leader(&self, from: u64, to: u64, r: &pb::MoveLeaderResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => format!("Leadership transferred from {from:x} to {to:x}\n"),
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.end() + "\n"
            }
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        })
    }

    /// The auth answers that carry only a header (user add, role grant-permission, ...):
    /// `simple` is etcdctl's line for it.
    pub fn header_only(&self, simple: String, header: &Option<pb::ResponseHeader>) -> Printed {
        Ok(match self.format {
            Format::Simple => simple,
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, header);
                o.end() + "\n"
            }
            Format::Fields => Self::fields_header(header),
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn user_get(&self, name: &str, r: &pb::AuthUserGetResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => {
                let roles: String = r.roles.iter().map(|role| format!(" {role}")).collect();
                format!("User: {name}\nRoles:{roles}\n")
            }
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.list_omit("roles", &strings_json(&r.roles)).end() + "\n"
            }
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn user_list(&self, r: &pb::AuthUserListResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => r.users.iter().map(|u| format!("{u}\n")).collect(),
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.list_omit("users", &strings_json(&r.users)).end() + "\n"
            }
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        })
    }

    pub fn role_list(&self, r: &pb::AuthRoleListResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => r.roles.iter().map(|role| format!("{role}\n")).collect(),
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.list_omit("roles", &strings_json(&r.roles)).end() + "\n"
            }
            Format::Fields => {
                let roles: String = r
                    .roles
                    .iter()
                    .map(|role| format!(" {}", go_quote(role.as_bytes())))
                    .collect();
                Self::fields_header(&r.header) + &format!("\"Roles\" :{roles}\n")
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    /// `role get`: in `simple`, the readable keys and then the writable ones, each a key,
    /// a range `[key, end)`, or `[key, <open ended>` (end "\x00"), marked when it is a prefix.
    pub fn role_get(&self, name: &str, r: &pb::AuthRoleGetResponse) -> Printed {
        use oxcd::pb::authpb::permission::Type;
        let perm_name = |t: i32| match Type::try_from(t) {
            Ok(Type::Read) => "READ".to_string(),
            Ok(Type::Write) => "WRITE".to_string(),
            Ok(Type::Readwrite) => "READWRITE".to_string(),
            Err(_) => t.to_string(),
        };
        Ok(match self.format {
            Format::Simple => {
                let show = |p: &oxcd::pb::authpb::Permission| {
                    let key = String::from_utf8_lossy(&p.key);
                    if p.range_end.is_empty() {
                        return format!("\t{key}\n");
                    }
                    let mut s = if p.range_end.as_ref() == [0] {
                        format!("\t[{key}, <open ended>")
                    } else {
                        format!("\t[{key}, {})", String::from_utf8_lossy(&p.range_end))
                    };
                    if super::txn::prefix_end(&p.key) == p.range_end.as_ref() {
                        s += &format!(" (prefix {key})");
                    }
                    s + "\n"
                };
                let reads = [Type::Read as i32, Type::Readwrite as i32];
                let writes = [Type::Write as i32, Type::Readwrite as i32];
                let mut s = format!("Role {name}\nKV Read:\n");
                for p in r.perm.iter().filter(|p| reads.contains(&p.perm_type)) {
                    s += &show(p);
                }
                s += "KV Write:\n";
                for p in r.perm.iter().filter(|p| writes.contains(&p.perm_type)) {
                    s += &show(p);
                }
                s
            }
            Format::Json => {
                let perms: Vec<String> = r
                    .perm
                    .iter()
                    .map(|p| {
                        Obj::new()
                            .int_omit("permType", p.perm_type)
                            .bytes_omit("key", &p.key)
                            .bytes_omit("range_end", &p.range_end)
                            .end()
                    })
                    .collect();
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.list_omit("perm", &perms).end() + "\n"
            }
            Format::Fields => {
                let mut s = Self::fields_header(&r.header);
                for p in &r.perm {
                    // Go's Println puts a space between `"PermType" : ` and the name.
                    s += &format!(
                        "\"PermType\" :  {}\n\"Key\" : {}\n\"RangeEnd\" : {}\n",
                        perm_name(p.perm_type),
                        go_quote(&p.key),
                        go_quote(&p.range_end)
                    );
                }
                s
            }
            Format::Table => return Err(unsupported(self.format)),
        })
    }

    /// `auth status`, as etcdctl 3.5 prints it.
    pub fn auth_status(&self, r: &pb::AuthStatusResponse) -> Printed {
        Ok(match self.format {
            Format::Simple => format!(
                "Authentication Status: {}\nAuthRevision: {}\n",
                r.enabled, r.auth_revision
            ),
            Format::Json => {
                let mut o = Obj::new();
                opt_header(&mut o, &r.header);
                o.bool_omit("enabled", r.enabled)
                    .int_omit("authRevision", r.auth_revision)
                    .end()
                    + "\n"
            }
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        })
    }
}
