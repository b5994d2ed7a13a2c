//! One error type for the whole domain. Each [`ErrorCode`] is one error code of the
//! Graph contract (graph-pim-v2.md, decisions.md §6 and §8); the HTTP layer maps codes to
//! statuses and renders the Graph error envelope.

use std::fmt;

/// The contract's error codes. The HTTP status of each is fixed by [`ErrorCode::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed input: bad JSON, a wrong type, an unsupported query option (400).
    BadRequest,
    /// A change-notification subscription that cannot be made: bad fields, a refused
    /// `notificationUrl`, or an endpoint that failed validation (400).
    InvalidRequest,
    /// A malformed ARM id (400).
    InvalidResourceId,
    /// A role-setting rule whose `setting` is not valid for its rule (400).
    InvalidRoleSetting,
    /// PATCH of an unknown role setting (400, per the contract).
    RoleSettingNotFoundForUpdate,
    /// `roleDefinitionId` of a request does not exist (400).
    RoleNotFound,
    /// The target resource is `Locked` (400).
    ResourceIsLocked,
    /// `subjectId` of a request does not exist (400).
    SubjectNotFound,
    /// `resourceId` of a request does not exist (400: create errors stay 400, decisions.md §6).
    ResourceNotFoundForRequest,
    /// A pending request already exists for the same resource, role, subject and state (400).
    PendingRoleAssignmentRequest,
    /// The assignment to create already exists (400).
    RoleAssignmentExists,
    /// The assignment to update, extend, renew or remove does not exist (400).
    RoleAssignmentDoesNotExist,
    /// The request breaks a role-setting rule (400).
    RoleAssignmentRequestPolicyValidationFailed,
    /// cancel/updateRequest on an unknown request id (400, per the contract).
    RoleAssignmentRequestNotFoundForAction,
    /// cancel of a request that is not pending (400).
    RequestCannotBeCancelled,
    /// updateRequest of a request that is not awaiting that decision (400).
    RequestCannotBeUpdated,
    /// GET of an unknown resource (404).
    ResourceNotFound,
    /// GET of an unknown role definition (404).
    RoleDefinitionNotFound,
    /// GET of an unknown role setting (404).
    RoleSettingNotFound,
    /// GET of an unknown role assignment (404).
    RoleAssignmentNotFound,
    /// GET of an unknown role assignment request (404).
    RoleAssignmentRequestNotFound,
    /// An unknown provisioning connector (404, connectors.md §9).
    ConnectorNotFound,
    /// A connectors file that does not validate, on reload (400, connectors.md §2.1).
    InvalidConnectorConfiguration,
    /// Anything else that is not there: an unknown route, subject or navigation (404).
    NotFound,
    /// Missing or invalid bearer token (401).
    InvalidAuthenticationToken,
    /// The caller may not do this (403).
    AuthorizationRequestDenied,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// A conflicting concurrent change; the client may retry (409).
    Conflict,
    /// A SCIM request error with its RFC 7644 §3.12 `scimType` (400; `uniqueness` is 409).
    Scim(ScimType),
    /// `If-Match` names another version of the resource (412).
    PreconditionFailed,
    /// The body is over the size limit (413).
    PayloadTooLarge,
    /// The client sent more requests than its rate limit allows; it may retry after the
    /// `Retry-After` delay (429).
    TooManyRequests,
    /// The database is unreachable, or the request took longer than the request timeout (503).
    ServiceUnavailable,
    /// A bug or an I/O failure; never caused by input (500).
    InternalServerError,
}

impl ErrorCode {
    /// The `error.code` string of the Graph envelope.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "BadRequest",
            InvalidRequest => "InvalidRequest",
            InvalidResourceId => "InvalidResourceId",
            InvalidRoleSetting => "InvalidRoleSetting",
            RoleSettingNotFoundForUpdate | RoleSettingNotFound => "RoleSettingNotFound",
            RoleNotFound => "RoleNotFound",
            ResourceIsLocked => "ResourceIsLocked",
            SubjectNotFound => "SubjectNotFound",
            PendingRoleAssignmentRequest => "PendingRoleAssignmentRequest",
            RoleAssignmentExists => "RoleAssignmentExists",
            RoleAssignmentDoesNotExist => "RoleAssignmentDoesNotExist",
            RoleAssignmentRequestPolicyValidationFailed => {
                "RoleAssignmentRequestPolicyValidationFailed"
            }
            RoleAssignmentRequestNotFoundForAction | RoleAssignmentRequestNotFound => {
                "RoleAssignmentRequestNotFound"
            }
            RequestCannotBeCancelled => "RequestCannotBeCancelled",
            RequestCannotBeUpdated => "RequestCannotBeUpdated",
            ResourceNotFound | ResourceNotFoundForRequest => "ResourceNotFound",
            RoleDefinitionNotFound => "RoleDefinitionNotFound",
            RoleAssignmentNotFound => "RoleAssignmentNotFound",
            NotFound => "NotFound",
            ConnectorNotFound => "ConnectorNotFound",
            InvalidConnectorConfiguration => "InvalidConnectorConfiguration",
            InvalidAuthenticationToken => "InvalidAuthenticationToken",
            AuthorizationRequestDenied => "Authorization_RequestDenied",
            MethodNotAllowed => "MethodNotAllowed",
            Conflict => "Conflict",
            Scim(ScimType::Uniqueness) => "Conflict",
            Scim(_) => "BadRequest",
            PreconditionFailed => "PreconditionFailed",
            PayloadTooLarge => "RequestEntityTooLarge",
            TooManyRequests => "TooManyRequests",
            ServiceUnavailable => "ServiceUnavailable",
            InternalServerError => "InternalServerError",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            ResourceNotFound
            | RoleDefinitionNotFound
            | RoleSettingNotFound
            | RoleAssignmentNotFound
            | RoleAssignmentRequestNotFound
            | ConnectorNotFound
            | NotFound => 404,
            InvalidAuthenticationToken => 401,
            AuthorizationRequestDenied => 403,
            MethodNotAllowed => 405,
            Conflict | Scim(ScimType::Uniqueness) => 409,
            PreconditionFailed => 412,
            PayloadTooLarge => 413,
            TooManyRequests => 429,
            ServiceUnavailable => 503,
            InternalServerError => 500,
            _ => 400,
        }
    }
}

/// The `scimType` of a SCIM error (RFC 7644 §3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid or names an unknown attribute.
    InvalidFilter,
    /// The filter yields more results than the server will process.
    TooMany,
    /// A value conflicts with a unique attribute (`userName`, `externalId`): 409.
    Uniqueness,
    /// The change would modify a read-only or immutable attribute.
    Mutability,
    /// The request body was not a valid SCIM message.
    InvalidSyntax,
    /// A PATCH `path` is malformed or names an unknown attribute.
    InvalidPath,
    /// A PATCH `path` or filter matched nothing to operate on.
    NoTarget,
    /// A value is missing or of the wrong type.
    InvalidValue,
    /// The SCIM protocol version is not supported.
    InvalidVers,
    /// The request cannot be completed because of sensitive information in the URI.
    Sensitive,
}

impl ScimType {
    /// The `scimType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::TooMany => "tooMany",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
            Self::InvalidVers => "invalidVers",
            Self::Sensitive => "sensitive",
        }
    }
}

/// A domain error: a contract code and a message for humans (user input in backticks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainError {
    /// The contract code.
    pub code: ErrorCode,
    /// What went wrong, for the caller.
    pub message: String,
}

impl DomainError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A `403 Authorization_RequestDenied`.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AuthorizationRequestDenied, message)
    }

    /// A `400 RoleAssignmentRequestPolicyValidationFailed` naming the failing rule.
    pub fn policy(message: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::RoleAssignmentRequestPolicyValidationFailed,
            message,
        )
    }

    /// A SCIM error with `scimType` `kind` (400, or 409 for `uniqueness`).
    pub fn scim(kind: ScimType, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Scim(kind), message)
    }

    /// A `500`: an I/O failure or a broken invariant, never caused by input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalServerError, message)
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for DomainError {}

/// Result with [`DomainError`].
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
