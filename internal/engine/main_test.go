package engine

import (
	"os"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }
