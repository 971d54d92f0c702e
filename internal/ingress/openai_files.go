package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/openai"
)

// The Batch API's files (POST/GET/DELETE /openai/v1/files): each file is an
// object of the files object store (pkg/jetstream FilesBucket) named by its
// id, its tenant, purpose and name in the object's metadata. A client
// uploads batch input files; the batch runner writes output and error
// files the same way.

// Object metadata keys of a file.
const (
	fileMetaTenant   = "tenant"
	fileMetaPurpose  = "purpose"
	fileMetaFilename = "filename"
)

// filesStore opens the files object store once.
type filesStore struct {
	mu  sync.Mutex
	obs natsjs.ObjectStore
}

func (i *Ingress) files(ctx context.Context) (natsjs.ObjectStore, error) {
	i.fileStore.mu.Lock()
	defer i.fileStore.mu.Unlock()
	if i.fileStore.obs != nil {
		return i.fileStore.obs, nil
	}
	obs, err := i.opt.JS.ObjectStore(ctx, i.opt.Topology.FilesBucket())
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", i.opt.Topology.FilesBucket(), err)
	}
	i.fileStore.obs = obs
	return obs, nil
}

// fileUnavailable is the 503 of a files store that cannot be reached.
func (i *Ingress) fileUnavailable(op string, err error) error {
	i.opt.Log.Error("files store unavailable", "op", op, "err", err)
	return &retryLater{apiError(http.StatusServiceUnavailable, "unavailable", "the file store cannot be reached; retry later"), 1}
}

// newFileID is a fresh file id, in OpenAI's form.
func newFileID() string { return "file-" + jobid.New() }

// validFileID reports whether id can name a file, so that a bad one is
// 404 without a lookup.
func validFileID(id string) bool {
	rest, ok := strings.CutPrefix(id, "file-")
	if !ok {
		return false
	}
	base, _, _ := strings.Cut(rest, "-") // output and error files: file-<batch>-output
	return jobid.Valid(base)
}

func fileNotFound(id string) error {
	return &openai.Error{Status: http.StatusNotFound, Type: openai.TypeInvalidRequest, Param: "file_id", Code: "file_not_found",
		Message: fmt.Sprintf("No such File object: %s", id)}
}

// fileOf is the file an object is, as the API shows it.
func fileOf(info *natsjs.ObjectInfo) openai.File {
	return openai.File{ID: info.Name, Object: "file", Bytes: int64(info.Size), CreatedAt: info.ModTime.Unix(),
		Filename: info.Metadata[fileMetaFilename], Purpose: info.Metadata[fileMetaPurpose], Status: "processed"}
}

// fileInfo is the tenant's file id; fileNotFound for another tenant's.
func (i *Ingress) fileInfo(ctx context.Context, tenant, id string) (*natsjs.ObjectInfo, error) {
	if !validFileID(id) {
		return nil, fileNotFound(id)
	}
	obs, err := i.files(ctx)
	if err != nil {
		return nil, i.fileUnavailable("open", err)
	}
	info, err := obs.GetInfo(ctx, id)
	if errors.Is(err, natsjs.ErrObjectNotFound) || err == nil && (info.Deleted || info.Metadata[fileMetaTenant] != tenant) {
		return nil, fileNotFound(id)
	}
	if err != nil {
		return nil, i.fileUnavailable("info", err)
	}
	return info, nil
}

// putFile stores r as file id of tenant.
func (i *Ingress) putFile(ctx context.Context, tenant, id, purpose, name string, r io.Reader) (*natsjs.ObjectInfo, error) {
	obs, err := i.files(ctx)
	if err != nil {
		return nil, err
	}
	return obs.Put(ctx, natsjs.ObjectMeta{Name: id, Metadata: map[string]string{
		fileMetaTenant: tenant, fileMetaPurpose: purpose, fileMetaFilename: name}}, r)
}

// maxFileBytes is the upload limit (ingress.openai.max_file_bytes).
func (i *Ingress) maxFileBytes() int64 {
	if n := i.opt.Config.Ingress.OpenAI.MaxFileBytes; n > 0 {
		return n
	}
	return 200 << 20
}

// errFileTooLarge ends a read past the upload limit.
var errFileTooLarge = errors.New("file too large")

// limitedReader reads at most n bytes and fails, rather than ending, on more.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errFileTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	if l.n < 0 {
		return k, errFileTooLarge
	}
	return k, err
}

// openaiUploadFile handles POST /openai/v1/files: a multipart form with
// `purpose` (batch) and `file` (JSONL). The file is streamed into the
// store, never held whole in memory.
func (i *Ingress) openaiUploadFile(c echo.Context) error {
	hr := c.Request()
	mt, params, err := mime.ParseMediaType(hr.Header.Get(echo.HeaderContentType))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return &openai.Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "POST /files takes multipart/form-data with the fields purpose and file"}
	}
	limit := i.maxFileBytes()
	// The form's other fields and boundaries are small: a megabyte over.
	hr.Body = http.MaxBytesReader(c.Response(), hr.Body, limit+1<<20)
	mr, err := hr.MultipartReader()
	if err != nil {
		return &openai.Error{Status: http.StatusBadRequest, Code: "invalid_body", Message: "multipart form: " + err.Error()}
	}
	tenant := tenantOf(c)
	ctx := hr.Context()
	var purpose string
	var info *natsjs.ObjectInfo
	id := newFileID()
	// drop removes a stored file whose form then turned out bad.
	drop := func() {
		if info != nil {
			if obs, err := i.files(ctx); err == nil {
				_ = obs.Delete(context.WithoutCancel(ctx), id)
			}
		}
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			drop()
			return i.uploadError(err, limit)
		}
		switch part.FormName() {
		case "purpose":
			b, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				drop()
				return i.uploadError(err, limit)
			}
			purpose = strings.TrimSpace(string(b))
		case "file":
			if info != nil {
				drop()
				return &openai.Error{Status: http.StatusBadRequest, Param: "file", Code: "invalid_value", Message: "the form has more than one file"}
			}
			info, err = i.putFile(ctx, tenant, id, openai.PurposeBatch, openai.FileName(part.FileName()), &limitedReader{r: part, n: limit})
			if err != nil {
				info = nil
				var mbe *http.MaxBytesError
				if errors.Is(err, errFileTooLarge) || errors.As(err, &mbe) || ctx.Err() != nil {
					return i.uploadError(err, limit)
				}
				return i.fileUnavailable("put", err)
			}
		}
		_ = part.Close()
	}
	switch {
	case info == nil:
		return &openai.Error{Status: http.StatusBadRequest, Param: "file", Code: "missing_required_parameter", Message: "the form has no file field"}
	case purpose != openai.PurposeBatch:
		drop()
		return &openai.Error{Status: http.StatusBadRequest, Param: "purpose", Code: "invalid_value",
			Message: fmt.Sprintf("purpose %q: this server stores only files of purpose %q", purpose, openai.PurposeBatch)}
	}
	i.opt.Log.Info("file uploaded", "file", id, "tenant", tenant, "bytes", info.Size)
	return c.JSON(http.StatusOK, fileOf(info))
}

// uploadError is the answer to an upload whose reading failed.
func (i *Ingress) uploadError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	if errors.Is(err, errFileTooLarge) || errors.As(err, &mbe) {
		return &openai.Error{Status: http.StatusRequestEntityTooLarge, Param: "file", Code: "too_large",
			Message: fmt.Sprintf("the file exceeds %d bytes (ingress.openai.max_file_bytes)", limit)}
	}
	return &openai.Error{Status: http.StatusBadRequest, Code: "invalid_body", Message: "multipart form unreadable: " + err.Error()}
}

// openaiGetFile handles GET /openai/v1/files/{id}.
func (i *Ingress) openaiGetFile(c echo.Context) error {
	info, err := i.fileInfo(c.Request().Context(), tenantOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, fileOf(info))
}

// openaiListFiles handles GET /openai/v1/files[?purpose=]: the tenant's
// files, newest first.
func (i *Ingress) openaiListFiles(c echo.Context) error {
	ctx := c.Request().Context()
	obs, err := i.files(ctx)
	if err != nil {
		return i.fileUnavailable("open", err)
	}
	infos, err := obs.List(ctx)
	if err != nil && !errors.Is(err, natsjs.ErrNoObjectsFound) {
		return i.fileUnavailable("list", err)
	}
	tenant, purpose := tenantOf(c), c.QueryParam("purpose")
	out := openai.FileList{Object: "list", Data: []openai.File{}}
	for _, info := range infos {
		if info.Deleted || info.Metadata[fileMetaTenant] != tenant || purpose != "" && info.Metadata[fileMetaPurpose] != purpose {
			continue
		}
		out.Data = append(out.Data, fileOf(info))
	}
	slices.SortFunc(out.Data, func(a, b openai.File) int { return strings.Compare(b.ID, a.ID) })
	return c.JSON(http.StatusOK, out)
}

// openaiFileContent handles GET /openai/v1/files/{id}/content.
func (i *Ingress) openaiFileContent(c echo.Context) error {
	ctx := c.Request().Context()
	info, err := i.fileInfo(ctx, tenantOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	obs, err := i.files(ctx)
	if err != nil {
		return i.fileUnavailable("open", err)
	}
	r, err := obs.Get(ctx, info.Name)
	if err != nil {
		return i.fileUnavailable("get", err)
	}
	defer r.Close()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/jsonl")
	w.Header().Set(echo.HeaderContentLength, strconv.FormatUint(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, r); err != nil {
		i.opt.Log.Warn("file content not sent whole", "file", info.Name, "err", err)
	}
	return nil
}

// openaiDeleteFile handles DELETE /openai/v1/files/{id}.
func (i *Ingress) openaiDeleteFile(c echo.Context) error {
	ctx := c.Request().Context()
	info, err := i.fileInfo(ctx, tenantOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	obs, err := i.files(ctx)
	if err != nil {
		return i.fileUnavailable("open", err)
	}
	if err := obs.Delete(ctx, info.Name); err != nil && !errors.Is(err, natsjs.ErrObjectNotFound) {
		return i.fileUnavailable("delete", err)
	}
	return c.JSON(http.StatusOK, openai.FileDeleted{ID: info.Name, Object: "file", Deleted: true})
}

// readFile reads the whole of file id (a batch input).
func (i *Ingress) readFile(ctx context.Context, id string) ([]byte, error) {
	obs, err := i.files(ctx)
	if err != nil {
		return nil, err
	}
	return obs.GetBytes(ctx, id)
}
