package a2a

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv/taskstore"
)

// ErrTooManyTasks is why a new task is refused: the store holds its bound
// of tasks and none of them has ended.
var ErrTooManyTasks = errors.New("too many A2A tasks in flight")

// store is a2a-go's task store with a bound: a2a-go's own in-memory store
// keeps every task forever, and any client with the token could grow it.
// Past max tasks the oldest ended one is dropped; with none ended, a new
// task is refused.
type store struct {
	max int

	mu    sync.Mutex
	tasks map[a2a.TaskID]*stored
	order []a2a.TaskID // creation order, oldest first
}

type stored struct {
	task    []byte // JSON: a copy no caller can change
	state   a2a.TaskState
	context string
	version taskstore.TaskVersion
	updated time.Time
}

var _ taskstore.Store = (*store)(nil)

func newStore(max int) *store {
	return &store{max: max, tasks: map[a2a.TaskID]*stored{}}
}

func (s *store) Create(_ context.Context, t *a2a.Task) (taskstore.TaskVersion, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return 0, fmt.Errorf("task %s: %w", t.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[t.ID]; ok {
		return 0, taskstore.ErrTaskAlreadyExists
	}
	if len(s.tasks) >= s.max && !s.evictLocked() {
		return 0, fmt.Errorf("%w: %d, none ended (a2a.max_tasks)", ErrTooManyTasks, s.max)
	}
	s.tasks[t.ID] = &stored{task: b, state: t.Status.State, context: t.ContextID, version: 1, updated: time.Now()}
	s.order = append(s.order, t.ID)
	return 1, nil
}

// evictLocked drops the oldest ended task; false if none has ended.
func (s *store) evictLocked() bool {
	for i, id := range s.order {
		if st := s.tasks[id]; st == nil || st.state.Terminal() {
			delete(s.tasks, id)
			s.order = slices.Delete(s.order, i, i+1)
			return true
		}
	}
	return false
}

func (s *store) Update(_ context.Context, req *taskstore.UpdateRequest) (taskstore.TaskVersion, error) {
	b, err := json.Marshal(req.Task)
	if err != nil {
		return 0, fmt.Errorf("task %s: %w", req.Task.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.tasks[req.Task.ID]
	if !ok {
		return 0, a2a.ErrTaskNotFound
	}
	if req.PrevVersion != taskstore.TaskVersionMissing && req.PrevVersion != st.version {
		return 0, taskstore.ErrConcurrentModification
	}
	st.task, st.state, st.context, st.updated = b, req.Task.Status.State, req.Task.ContextID, time.Now()
	st.version++
	return st.version, nil
}

func (s *store) Get(_ context.Context, id a2a.TaskID) (*taskstore.StoredTask, error) {
	s.mu.Lock()
	st, ok := s.tasks[id]
	var b []byte
	var v taskstore.TaskVersion
	if ok {
		b, v = st.task, st.version
	}
	s.mu.Unlock()
	if !ok {
		return nil, a2a.ErrTaskNotFound
	}
	t, err := decodeTask(b)
	if err != nil {
		return nil, err
	}
	return &taskstore.StoredTask{Task: t, Version: v}, nil
}

// List serves ListTasks newest first; the page token is an offset into
// that order.
func (s *store) List(_ context.Context, req *a2a.ListTasksRequest) (*a2a.ListTasksResponse, error) {
	size := req.PageSize
	switch {
	case size == 0:
		size = 50
	case size < 1 || size > 100:
		return nil, fmt.Errorf("%w: pageSize %d: want 1 to 100", a2a.ErrInvalidParams, size)
	}
	offset := 0
	if req.PageToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(req.PageToken)
		if err == nil {
			offset, err = strconv.Atoi(string(raw))
		}
		if err != nil || offset < 0 {
			return nil, fmt.Errorf("%w: pageToken %q is not one this server gave", a2a.ErrInvalidParams, req.PageToken)
		}
	}
	s.mu.Lock()
	var match [][]byte
	for _, id := range slices.Backward(s.order) {
		st := s.tasks[id]
		switch {
		case req.ContextID != "" && st.context != req.ContextID,
			req.Status != "" && st.state != req.Status,
			req.StatusTimestampAfter != nil && !st.updated.After(*req.StatusTimestampAfter):
			continue
		}
		match = append(match, st.task)
	}
	s.mu.Unlock()
	resp := &a2a.ListTasksResponse{TotalSize: len(match), PageSize: size, Tasks: []*a2a.Task{}}
	for i := offset; i < len(match) && i < offset+size; i++ {
		t, err := decodeTask(match[i])
		if err != nil {
			return nil, err
		}
		if !req.IncludeArtifacts {
			t.Artifacts = nil
		}
		if req.HistoryLength != nil {
			if n := *req.HistoryLength; n >= 0 && len(t.History) > n {
				t.History = t.History[len(t.History)-n:]
			}
		}
		resp.Tasks = append(resp.Tasks, t)
	}
	if offset+size < len(match) {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset + size)))
	}
	return resp, nil
}

func decodeTask(b []byte) (*a2a.Task, error) {
	var t a2a.Task
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("stored task: %w", err)
	}
	return &t, nil
}
