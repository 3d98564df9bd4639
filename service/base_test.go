package service_test

import (
	"io"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/service"
)

// noQuery writes three of the four callbacks Base leaves to the service.
type noQuery struct{ service.Base }

func (noQuery) OnStart(service.Cluster, io.Reader) error                   { return nil }
func (noQuery) OnSessionMessage(service.Session, time.Time, []byte) []byte { return nil }
func (noQuery) OnTakeSnapshot(io.Writer) error                             { return nil }

// Base alone, or with a mandatory callback missing, is not a Service: forgetting one fails to
// compile where the service is used, instead of running with a silent default.
func TestBaseLeavesFourCallbacksToTheService(t *testing.T) {
	if _, ok := any(service.Base{}).(service.Service); ok {
		t.Fatal("Base alone is a Service")
	}
	if _, ok := any(noQuery{}).(service.Service); ok {
		t.Fatal("a service without OnQuery is a Service")
	}
	if _, ok := any(&Register{}).(service.Service); !ok {
		t.Fatal("Register (Base and the four callbacks) is not a Service")
	}
}
