//go:build !yamlv3

package main

import (
	"io"

	"go.yaml.in/yaml/v4"
)

func newDecoder(r io.Reader) *yaml.Decoder { return yaml.NewDecoder(r) }

func marshal(v any) ([]byte, error) { return yaml.Marshal(v) }
