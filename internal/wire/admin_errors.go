package wire

// AdminErrors: the member's own recent warnings and errors (any member answers for itself, with
// or without a quorum, like AdminStatus): what it logged at WARN and above, kept in its data
// directory's errors.log so that an operator can ask after the fact, and across restarts.
const AdminErrors = "errors"

// Bounds of an AdminErrors answer: at most ErrorsAnswerRecordsMax records, the newest, and at
// most ErrorsAnswerBytesMax bytes of them encoded, so that the answer stays a small frame however
// chatty the member was (the others are counted in MemberErrors.Omitted).
const (
	ErrorsAnswerRecordsMax = 200
	ErrorsAnswerBytesMax   = MaxAdminBytes
)

// MemberErrors is AdminErrors's answer: one member's recent warnings and errors, oldest first.
type MemberErrors struct {
	// ID is the member that answered (an operator who asked every endpoint reads who said what).
	ID      int         `json:"id"`
	Records []LogRecord `json:"records"`
	// Omitted counts older records the member keeps that the answer leaves out (its bounds).
	Omitted int `json:"omitted,omitempty"`
	// Dropped counts records the member logged but could not keep (its writer fell behind a
	// flood); WriteFailures the writes of its file that failed (a full or failing disk). Both
	// since the member started.
	Dropped       int `json:"dropped,omitempty"`
	WriteFailures int `json:"write_failures,omitempty"`
}

// LogRecord is one log record, as the member's errors.log keeps it (one JSON object a line) and
// the admin channel shows it. Every value is a string: the record is for reading, and a string
// reads the same whatever the value's type was.
type LogRecord struct {
	// Time is RFC 3339, to the millisecond, in the member's time zone.
	Time string `json:"time"`
	// Level is slog's name for it: "WARN", "ERROR" (or "ERROR+2" and the like).
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	Attrs []LogAttr `json:"attrs,omitempty"`
}

// LogAttr is one of a record's attributes; a group's are flattened, "group.key".
type LogAttr struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}
