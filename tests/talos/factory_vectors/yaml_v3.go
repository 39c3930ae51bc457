//go:build yamlv3

package main

import (
	"io"

	"gopkg.in/yaml.v3"
)

func newDecoder(r io.Reader) *yaml.Decoder { return yaml.NewDecoder(r) }

func marshal(v any) ([]byte, error) { return yaml.Marshal(v) }
