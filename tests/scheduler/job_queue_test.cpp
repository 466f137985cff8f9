#include <gtest/gtest.h>

#include "scheduler/job_queue.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

JobSpec spec(int priority, const std::string& prompt = "p") {
  JobSpec s;
  s.model = "m";
  s.prompt = prompt;
  s.width = s.height = 16;
  s.frames = 1;
  s.steps = 4;
  s.priority = priority;
  return s;
}

TEST(JobQueue, HighestPriorityFirstFifoWithin) {
  test::TempDir dir;
  JobQueue q(dir.path());
  std::string a = q.submit(spec(0, "a"));
  std::string b = q.submit(spec(5, "b"));
  std::string c = q.submit(spec(0, "c"));
  std::string d = q.submit(spec(5, "d"));
  std::vector<std::string> order;
  while (auto s = q.try_next()) {
    order.push_back(s->record.id);
    q.finish(s->record.id, JobPhase::kDone, "");
  }
  EXPECT_EQ(order, (std::vector<std::string>{b, d, a, c}));
}

TEST(JobQueue, FilteredTakeSkipsRejectedJobsAndKeepsPriorityAmongTheRest) {
  test::TempDir dir;
  JobQueue q(dir.path());
  std::string a = q.submit(spec(0, "small-a"));
  std::string b = q.submit(spec(9, "big-b"));
  std::string c = q.submit(spec(5, "small-c"));
  std::string d = q.submit(spec(5, "small-d"));
  // A small card's worker: never takes "big-*" jobs; they stay queued for another taker.
  const JobFilter small = [](const JobRecord& r) { return r.spec.prompt.rfind("big", 0) != 0; };
  std::vector<std::string> order;
  while (auto s = q.try_next(small)) {
    order.push_back(s->record.id);
    q.finish(s->record.id, JobPhase::kDone, "");
  }
  EXPECT_EQ(order, (std::vector<std::string>{c, d, a}));
  EXPECT_EQ(q.get(b)->phase, JobPhase::kQueued);
  auto s = q.wait_next(JobFilter{});  // an unfiltered taker gets it at once
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->record.id, b);
}

TEST(JobQueue, AcceptedJobsSurviveARestartAndRunningOnesAreQueuedAgain) {
  test::TempDir dir;
  std::string a, b, c;
  {
    JobQueue q(dir.path());
    a = q.submit(spec(0, "a"));
    b = q.submit(spec(0, "b"));
    c = q.submit(spec(0, "c"));
    auto s = q.try_next();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->record.id, a);
    q.record_step(a, 2, 0.5);
    q.cancel(c);
    // the process "dies" here: no finish for a
  }
  JobQueue q(dir.path());
  auto ra = q.get(a), rb = q.get(b), rc = q.get(c);
  ASSERT_TRUE(ra && rb && rc);
  EXPECT_EQ(ra->phase, JobPhase::kQueued);
  EXPECT_EQ(ra->step, 2);
  EXPECT_EQ(ra->spec.prompt, "a");
  EXPECT_EQ(rb->phase, JobPhase::kQueued);
  EXPECT_EQ(rc->phase, JobPhase::kCancelled);
  // ids keep increasing after a restart
  std::string d = q.submit(spec(0, "d"));
  EXPECT_NE(d, a);
  EXPECT_NE(d, b);
  EXPECT_NE(d, c);
  EXPECT_EQ(q.list().size(), 4u);
  EXPECT_EQ(q.list().back().id, d);
}

TEST(JobQueue, CancelQueuedIsImmediateCancelRunningIsPending) {
  test::TempDir dir;
  JobQueue q(dir.path());
  std::string a = q.submit(spec(0));
  std::string b = q.submit(spec(0));
  auto s = q.try_next();
  ASSERT_TRUE(s);
  auto ob = q.cancel(b);
  ASSERT_TRUE(ob);
  EXPECT_EQ(ob->phase, JobPhase::kCancelled);
  EXPECT_FALSE(ob->pending);
  auto oa = q.cancel(a);
  ASSERT_TRUE(oa);
  EXPECT_EQ(oa->phase, JobPhase::kRunning);
  EXPECT_TRUE(oa->pending);
  EXPECT_EQ(s->token->reason(), CancelToken::Reason::kCancel);
  EXPECT_FALSE(q.cancel("j-999").has_value());
  EXPECT_FALSE(q.try_next().has_value());  // b was cancelled, never starts
}

TEST(JobQueue, ListenersSeeStateAndStepEvents) {
  test::TempDir dir;
  JobQueue q(dir.path());
  std::vector<std::string> kinds;
  int h = q.subscribe([&](const JobRecord& r, const std::string& kind) {
    kinds.push_back(kind + ":" + phase_name(r.phase));
  });
  std::string a = q.submit(spec(0));
  auto s = q.try_next();
  q.record_step(a, 1, 0.1);
  q.finish(a, JobPhase::kDone, "");
  q.unsubscribe(h);
  q.submit(spec(0));
  EXPECT_EQ(kinds, (std::vector<std::string>{"state:queued", "state:running", "step:running",
                                             "state:done"}));
}

TEST(JobQueue, StagesAreNotJournaledButWhereAndWhatSizeAre) {
  test::TempDir dir;
  std::string a;
  {
    JobQueue q(dir.path());
    std::vector<std::string> kinds;
    q.subscribe([&](const JobRecord& r, const std::string& kind) { kinds.push_back(kind + ":" + r.stage); });
    a = q.submit(spec(0));
    q.record_stage(a, "loading");  // queued: ignored (a stage belongs to a running job)
    ASSERT_TRUE(q.try_next().has_value());
    q.record_start(a, -1, "cuda:1");
    q.record_stage(a, "denoising");
    q.record_stage(a, "denoising");  // unchanged: no event
    EXPECT_EQ(q.get(a)->stage, "denoising");
    q.requeue(a);  // e.g. a shutdown
    EXPECT_EQ(q.get(a)->stage, "");
    ASSERT_TRUE(q.try_next().has_value());
    q.record_stage(a, "decoding");
    EXPECT_EQ(kinds, (std::vector<std::string>{"state:", "state:", "state:", "stage:denoising", "state:", "state:",
                                               "stage:decoding"}));
  }
  {
    JobQueue q(dir.path());  // a crash while decoding: queued again, no stale stage
    auto r = q.get(a);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->phase, JobPhase::kQueued);
    EXPECT_EQ(r->stage, "");
    EXPECT_EQ(r->ran_on, "cuda:1");
    ASSERT_TRUE(q.try_next().has_value());
    q.finish(a, JobPhase::kDone, "", 100, "mp4", VideoShape{624, 624, 81});
  }
  JobQueue q(dir.path());
  auto r = q.get(a);
  EXPECT_EQ(r->video_width, 624);
  EXPECT_EQ(r->video_height, 624);
  EXPECT_EQ(r->video_frames, 81);
}

}  // namespace
}  // namespace wand::sched
