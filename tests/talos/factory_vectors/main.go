// Regenerates the schematic ID vectors: each input schematic decoded and
// re-marshalled exactly as siderolabs/image-factory pkg/schematic does
// (KnownFields decode, yaml.Marshal, sha256 of the bytes). The struct below
// copies the factory's field order and YAML tags (pkg/schematic/schematic.go,
// v1.5.0: Owner first, EmbeddedMachineConfiguration first in Customization,
// EnrollKeys before IncludeWellKnownCertificates). The YAML library is chosen
// by build tag: go.yaml.in/yaml/v4 (the current factory, yaml_v4.go) or, with
// -tags yamlv3, gopkg.in/yaml.v3 (factories before v1.0.0, yaml_v3.go).
//
//	apt-get install golang-go golang-gopkg-yaml.v3-dev
//	# yaml/v4: a checkout of github.com/yaml/go-yaml (v4.0.0-rc.6 or newer) in $GOPATH/src/go.yaml.in/yaml/v4
//	GO111MODULE=off GOPATH=$GOPATH:/usr/share/gocode go run . < inputs.v4.json > ../factory_vectors_v4.json
//	GO111MODULE=off GOPATH=/usr/share/gocode go run -tags yamlv3 . < inputs.json > ../factory_vectors.json
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

type Schematic struct {
	Owner         string        `yaml:"owner,omitempty"`
	Overlay       Overlay       `yaml:"overlay,omitempty"`
	Customization Customization `yaml:"customization"`
}

type Customization struct {
	EmbeddedMachineConfiguration string           `yaml:"embeddedMachineConfiguration,omitempty"`
	ExtraKernelArgs              []string         `yaml:"extraKernelArgs,omitempty"`
	Meta                         []MetaValue      `yaml:"meta,omitempty"`
	SystemExtensions             SystemExtensions `yaml:"systemExtensions,omitempty"`
	Bootloader                   string           `yaml:"bootloader,omitempty"`
	SecureBoot                   SecureBoot       `yaml:"secureboot,omitempty"`
	DiskImage                    DiskImage        `yaml:"diskImage,omitempty"`
}

type MetaValue struct {
	Key   uint8  `yaml:"key"`
	Value string `yaml:"value"`
}

type SystemExtensions struct {
	OfficialExtensions []string `yaml:"officialExtensions,omitempty"`
}

type Overlay struct {
	Image   string         `yaml:"image"`
	Name    string         `yaml:"name"`
	Options map[string]any `yaml:"options,omitempty"`
}

type SecureBoot struct {
	EnrollKeys                   string `yaml:"enrollKeys,omitempty"`
	IncludeWellKnownCertificates bool   `yaml:"includeWellKnownCertificates,omitempty"`
}

type DiskImage struct {
	SectorSize uint `yaml:"sectorSize,omitempty"`
}

func main() {
	raw, _ := io.ReadAll(os.Stdin)
	var inputs []string
	if err := json.Unmarshal(raw, &inputs); err != nil {
		panic(err)
	}
	out := []map[string]string{}
	for _, input := range inputs {
		dec := newDecoder(bytes.NewReader([]byte(input)))
		dec.KnownFields(true)
		var s Schematic
		if err := dec.Decode(&s); err != nil {
			out = append(out, map[string]string{"input": input, "error": err.Error()})
			continue
		}
		data, err := marshal(&s)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(data)
		out = append(out, map[string]string{"input": input, "yaml": string(data), "id": hex.EncodeToString(sum[:])})
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Println(string(b))
}
