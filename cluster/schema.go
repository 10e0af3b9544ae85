package cluster

import "parley/cluster/schema"

// The control plane's vocabulary lives in package schema, which does not
// import Raft (so parleyctl can build on it alone); these aliases keep
// its names this package's own.

// Records and commands.
type (
	Actor               = schema.Actor
	Assign              = schema.Assign
	Audit               = schema.Audit
	AuditEntry          = schema.AuditEntry
	Audited             = schema.Audited
	Assignment          = schema.Assignment
	BillingEvent        = schema.BillingEvent
	Brand               = schema.Brand
	Command             = schema.Command
	CommandType         = schema.CommandType
	CreateKey           = schema.CreateKey
	CreateOperator      = schema.CreateOperator
	CreateSession       = schema.CreateSession
	CreateWorkspace     = schema.CreateWorkspace
	DeleteOperator      = schema.DeleteOperator
	DeleteWorkspace     = schema.DeleteWorkspace
	EraseConversation   = schema.EraseConversation
	EraseVisitor        = schema.EraseVisitor
	SetRetention        = schema.SetRetention
	SetVisitorDeletion  = schema.SetVisitorDeletion
	RequestDeletion     = schema.RequestDeletion
	DeletionRequest     = schema.DeletionRequest
	Erasure             = schema.Erasure
	Hash                = schema.Hash
	Key                 = schema.Key
	Member              = schema.Member
	NodeInfo            = schema.NodeInfo
	Operator            = schema.Operator
	Plan                = schema.Plan
	Prune               = schema.Prune
	PruneAudit          = schema.PruneAudit
	RecordAudit         = schema.RecordAudit
	RecordBillingEvent  = schema.RecordBillingEvent
	RegisterNode        = schema.RegisterNode
	ReportUsage         = schema.ReportUsage
	Request             = schema.Request
	UnknownCommandError = schema.UnknownCommandError
	Result              = schema.Result
	RevokeKey           = schema.RevokeKey
	RevokeSession       = schema.RevokeSession
	Role                = schema.Role
	Sealed              = schema.Sealed
	SecretKind          = schema.SecretKind
	Session             = schema.Session
	SetPlan             = schema.SetPlan
	SetSecret           = schema.SetSecret
	Stats               = schema.Stats
	UpdateOperator      = schema.UpdateOperator
	RehashPassword      = schema.RehashPassword
	RotateSecret        = schema.RotateSecret
	UpdateWorkspace     = schema.UpdateWorkspace
	Usage               = schema.Usage
	Workspace           = schema.Workspace
	Webhook             = schema.Webhook
	DeadLetter          = schema.DeadLetter
	CreateWebhook       = schema.CreateWebhook
	RotateWebhookSecret = schema.RotateWebhookSecret
	DeleteWebhook       = schema.DeleteWebhook
	AddDeadLetters      = schema.AddDeadLetters
	RedeliverWebhook    = schema.RedeliverWebhook
	ResolveDeadLetters  = schema.ResolveDeadLetters
	AckWebhookOutbox    = schema.AckWebhookOutbox
	OutboxEntry         = schema.OutboxEntry
	EmailSettings       = schema.EmailSettings
	SetEmailSettings    = schema.SetEmailSettings
	DeleteEmailSettings = schema.DeleteEmailSettings
	RecordMail          = schema.RecordMail
	MailState           = schema.MailState
)

const (
	DefaultPasswordIterations = schema.DefaultPasswordIterations
	MaxRetentionDays          = schema.MaxRetentionDays
	MinPasswordIterations     = schema.MinPasswordIterations
	RoleAdmin                 = schema.RoleAdmin
	RoleAgent                 = schema.RoleAgent
	SecretIdentity            = schema.SecretIdentity
	SecretVisitor             = schema.SecretVisitor
	TypeCreateWorkspace       = schema.TypeCreateWorkspace
	TypeUpdateWorkspace       = schema.TypeUpdateWorkspace
	TypeDeleteWorkspace       = schema.TypeDeleteWorkspace
	TypeCreateOperator        = schema.TypeCreateOperator
	TypeUpdateOperator        = schema.TypeUpdateOperator
	TypeDeleteOperator        = schema.TypeDeleteOperator
	TypeCreateSession         = schema.TypeCreateSession
	TypeRevokeSession         = schema.TypeRevokeSession
	TypeCreateKey             = schema.TypeCreateKey
	TypeRevokeKey             = schema.TypeRevokeKey
	TypeSetSecret             = schema.TypeSetSecret
	TypeSetPlan               = schema.TypeSetPlan
	TypeReportUsage           = schema.TypeReportUsage
	TypeRecordBillingEvent    = schema.TypeRecordBillingEvent
	TypePrune                 = schema.TypePrune
	TypeAssign                = schema.TypeAssign
	TypeRegisterNode          = schema.TypeRegisterNode
	TypeEraseConversation     = schema.TypeEraseConversation
	TypeEraseVisitor          = schema.TypeEraseVisitor
	TypeSetRetention          = schema.TypeSetRetention
	TypeSetVisitorDeletion    = schema.TypeSetVisitorDeletion
	TypeRequestDeletion       = schema.TypeRequestDeletion
	DeletionConfirm           = schema.DeletionConfirm
	DeletionImmediate         = schema.DeletionImmediate
	TypeRequest               = schema.TypeRequest
	TypeRehashPassword        = schema.TypeRehashPassword
	TypeRotateSecret          = schema.TypeRotateSecret
	MaxSecretOverlap          = schema.MaxSecretOverlap
	TypeAudited               = schema.TypeAudited
	TypeRecordAudit           = schema.TypeRecordAudit
	TypePruneAudit            = schema.TypePruneAudit
	ActorRoot                 = schema.ActorRoot
	ActorOperator             = schema.ActorOperator
	ActorKey                  = schema.ActorKey
	ActorAnonymous            = schema.ActorAnonymous
	OutcomeOK                 = schema.OutcomeOK
	ActionRequest             = schema.ActionRequest
	MaxAuditBatch             = schema.MaxAuditBatch
)

var (
	CheckEmail           = schema.CheckEmail
	DecodeCommand        = schema.DecodeCommand
	EncodeCommand        = schema.EncodeCommand
	HashPassword         = schema.HashPassword
	HashToken            = schema.HashToken
	KeyID                = schema.KeyID
	SessionID            = schema.SessionID
	VerifyPassword       = schema.VerifyPassword
	VerifyPasswordAtCost = schema.VerifyPasswordAtCost
	PasswordCost         = schema.PasswordCost
)

// Rules this package also applies to its own arguments.
var (
	checkID        = schema.CheckID
	checkRegion    = schema.CheckRegion
	checkAddr      = schema.CheckAddr
	checkRequestID = schema.CheckRequestID
)

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
