//! The protobuf messages etcd stores in its backend, derived by hand from etcd's .proto files
//! (mvccpb, leasepb, authpb, etcdserverpb.AlarmMember). prost, like Go's gogoproto marshalers,
//! writes fields in tag order and leaves out proto3 defaults, so encoding is byte-for-byte
//! what etcd writes.

/// mvccpb.KeyValue: a value of the `key` bucket.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The revision of the key's latest creation.
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// The revision of this modification.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// Modifications since creation (1 for a fresh key).
    #[prost(int64, tag = "4")]
    pub version: i64,
    /// The value.
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// The attached lease, 0 for none.
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// leasepb.Lease: a value of the `lease` bucket.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Lease {
    /// The lease id (also the bucket key, big-endian).
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The granted TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The TTL left at the last checkpoint (0 when never checkpointed).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// etcdserverpb.AlarmMember: a key of the `alarm` bucket (the value is empty).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct AlarmMember {
    /// The member that raised the alarm.
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    /// etcdserverpb.AlarmType: 1 NOSPACE, 2 CORRUPT.
    #[prost(int32, tag = "2")]
    pub alarm: i32,
}

/// authpb.UserAddOptions.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct UserAddOptions {
    /// The user logs in by certificate CN only.
    #[prost(bool, tag = "1")]
    pub no_password: bool,
}

/// authpb.User: a value of the `authUsers` bucket, keyed by name.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct User {
    /// The user's name.
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    /// The bcrypt hash of the password (empty with `no_password`).
    #[prost(bytes = "vec", tag = "2")]
    pub password: Vec<u8>,
    /// Granted roles, sorted.
    #[prost(string, repeated, tag = "3")]
    pub roles: Vec<String>,
    /// Options (etcd 3.4.23 and 3.5 write an empty one for a user added with a password).
    #[prost(message, optional, tag = "4")]
    pub options: Option<UserAddOptions>,
}

/// authpb.Permission: a key range a role may read, write or both.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Permission {
    /// authpb.Permission.Type: 0 READ, 1 WRITE, 2 READWRITE.
    #[prost(int32, tag = "1")]
    pub perm_type: i32,
    /// The key, or the range's start.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    /// The range's end (empty for one key).
    #[prost(bytes = "vec", tag = "3")]
    pub range_end: Vec<u8>,
}

/// authpb.Role: a value of the `authRoles` bucket, keyed by name.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Role {
    /// The role's name.
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    /// Its permissions.
    #[prost(message, repeated, tag = "2")]
    pub key_permission: Vec<Permission>,
}
