package tensor_test

import (
	"encoding/json"
	"fmt"

	"github.com/inferq/inferq/pkg/tensor"
)

// Example shows a request's path through the broker: decode, check against
// the model schema, batch two ragged jobs, then route the output back.
func Example() {
	spec := tensor.Spec{Name: "TOKENS", Datatype: tensor.Int32, Dims: []int64{-1}}
	var parts []*tensor.Tensor
	for _, body := range []string{
		`{"name":"TOKENS","shape":[1,2],"datatype":"INT32","data":[[7,8]]}`,
		`{"name":"TOKENS","shape":[1,3],"datatype":"INT32","data":[1,2,3]}`,
	} {
		var j tensor.JSON
		if err := json.Unmarshal([]byte(body), &j); err != nil {
			panic(err)
		}
		t, err := tensor.FromJSON(&j)
		if err != nil {
			panic(err)
		}
		if err := spec.Check(t); err != nil {
			panic(err)
		}
		parts = append(parts, t)
	}
	b, err := tensor.Concat("TOKENS", parts, true)
	if err != nil {
		panic(err)
	}
	mask, _ := tensor.AppendJSONData(nil, b.Mask)
	fmt.Println("batched shape:", b.Tensor.Shape, "mask:", string(mask))

	// Pretend the model echoed its input; split and unpad per job.
	outs, err := tensor.Split(b.Tensor, b.Rows)
	if err != nil {
		panic(err)
	}
	for i, o := range outs {
		u, err := tensor.Unpad(o, b.Shapes[i])
		if err != nil {
			panic(err)
		}
		j, _ := tensor.ToJSON(u)
		fmt.Println("job", i, j.Shape, string(j.Data))
	}
	// Output:
	// batched shape: [2 3] mask: [true,true,false,true,true,true]
	// job 0 [1 2] [7,8]
	// job 1 [1 3] [1,2,3]
}
