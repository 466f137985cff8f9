# ctest bench_streamed_job_smoke: runs `bench_streamed_job --tiny` on the CPU (a tiny-t2v model
# written into WORK, 64x48, 5 frames, 4 steps, host tier smaller than both experts) and checks
# the JSON it writes: every field run.sh and the summary writer read is there, and the counters
# agree with the job (one step time per step, the expert switch inside the job, each T5 layer
# read per encode, the DiT blocks read from disk, a decoded video of the requested size).
#   cmake -DBIN=.../bench_streamed_job -DWORK=/tmp/dir -P bench_smoke_check.cmake
if(NOT BIN OR NOT WORK)
  message(FATAL_ERROR "usage: cmake -DBIN=<bench_streamed_job> -DWORK=<dir> -P bench_smoke_check.cmake")
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
execute_process(
  COMMAND "${BIN}" --tiny --model "${WORK}/model" --spool "${WORK}/spool" --json "${WORK}/out.json"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "bench_streamed_job --tiny failed (${rc}):\n${out}\n${err}")
endif()
file(READ "${WORK}/out.json" j)

function(get var)
  string(JSON v ERROR_VARIABLE e GET "${j}" ${ARGN})
  if(e)
    message(FATAL_ERROR "out.json: ${ARGN}: ${e}")
  endif()
  set(${var} "${v}" PARENT_SCOPE)
endfunction()
function(expect_positive)
  get(v ${ARGN})
  if(NOT v GREATER 0)
    message(FATAL_ERROR "out.json: ${ARGN} = ${v}, expected > 0")
  endif()
endfunction()

get(steps steps)
string(JSON nsteps LENGTH "${j}" c step_s)
string(JSON nwaits LENGTH "${j}" c step_wait_s)
if(NOT nsteps EQUAL steps OR NOT nwaits EQUAL steps)
  message(FATAL_ERROR "out.json: ${nsteps} step times and ${nwaits} waits for ${steps} steps")
endif()
get(sw c switch_step)
if(NOT sw GREATER 0 OR NOT sw LESS steps)
  message(FATAL_ERROR "out.json: expert switch at step ${sw}, expected inside the ${steps}-step job")
endif()
get(dsteps c streamed_dit total steps)
if(NOT dsteps EQUAL steps)
  message(FATAL_ERROR "out.json: the streamed DiT ran ${dsteps} steps, the job has ${steps}")
endif()
# Both experts' blocks came from disk through the host window (the host tier holds < 2 experts).
get(dit_disk c bytes_from_disk dit)
get(expert expert_block_bytes)
math(EXPR two "2 * ${expert}")
if(dit_disk LESS two)
  message(FATAL_ERROR "out.json: ${dit_disk} bytes of DiT blocks from disk, expected >= both experts (${two})")
endif()
# umT5: prompt + negative prompt in ONE pass over the layers (Note [Layer-major encode]):
# every layer read and run once.
get(t5_layers c t5 layers)
get(t5_run c t5 layers_run)
if(NOT t5_run EQUAL t5_layers)
  message(FATAL_ERROR "out.json: ${t5_run} umT5 layers run, expected ${t5_layers} (one pass for both prompts)")
endif()
get(t5_req c t5 bytes_requested)
get(t5_total c t5 layer_bytes_total)
set(want "${t5_total}")
if(NOT t5_req EQUAL want)
  message(FATAL_ERROR "out.json: ${t5_req} umT5 bytes requested, expected ${want}")
endif()
# Video [3, frames, height, width].
get(f frames)
get(h height)
get(w width)
foreach(pair "1;${f}" "2;${h}" "3;${w}")
  list(GET pair 0 i)
  list(GET pair 1 want)
  get(v c video_shape ${i})
  if(NOT v EQUAL want)
    message(FATAL_ERROR "out.json: video_shape[${i}] = ${v}, expected ${want}")
  endif()
endforeach()
foreach(k "c;job_s" "c;t5_s" "c;decode_s" "c;host_peak_rss_bytes" "a;cfg_step_s" "a;job_s" "c_over_a_job"
          "host_tier_bytes" "host_window_bytes" "slot_bytes")
  expect_positive(${k})
endforeach()
string(JSON ptype TYPE "${j}" planner)
if(ptype STREQUAL "OBJECT")  # built with scheduler/plan: a prediction, not a refusal
  string(JSON perr ERROR_VARIABLE none GET "${j}" planner error)
  if(NOT none)
    message(FATAL_ERROR "out.json: the planner refused the tiny job: ${perr}")
  endif()
  expect_positive(planner job_s)
  expect_positive(planner step_s)
endif()

# bench_streamed_step --tiny ((a) resident vs (b) streamed on the CPU): one size, both cases timed,
# the streamed executor ran every block of every run (1 warm-up + 2 x (forward + CFG step)).
if(STEP_BIN)
  execute_process(
    COMMAND "${STEP_BIN}" --tiny --model "${WORK}/step-model" --spool "${WORK}/spool" --repeat 2
            --json "${WORK}/step.json"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bench_streamed_step --tiny failed (${rc}):\n${out}\n${err}")
  endif()
  file(READ "${WORK}/step.json" j)
  string(JSON n LENGTH "${j}" results)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "step.json: ${n} results, expected 1")
  endif()
  foreach(k "results;0;resident;forward_s" "results;0;resident;cfg_step_s" "results;0;streamed;forward_s"
            "results;0;streamed;cfg_step_s" "results;0;streamed_over_resident_cfg_step" "host_peak_rss_bytes")
    expect_positive(${k})
  endforeach()
  get(layers layers)
  get(blocks executor blocks_run)
  math(EXPR want "5 * ${layers}")
  if(NOT blocks EQUAL want)
    message(FATAL_ERROR "step.json: executor ran ${blocks} block uses, expected ${want} (5 runs x ${layers})")
  endif()
  message(STATUS "bench_streamed_step smoke ok: ${blocks} block uses")
endif()
message(STATUS "bench_streamed_job smoke ok: ${steps} steps, switch at ${sw}, ${dit_disk} DiT bytes from disk, "
               "planner ${ptype}")

# summarize.py (what run.sh writes bench/results/exec-*.md with) on both JSONs.
find_program(PY python3)
if(PY AND STEP_BIN)
  execute_process(
    COMMAND "${PY}" "${CMAKE_CURRENT_LIST_DIR}/summarize.py" --ab "${WORK}/step.json" --c "${WORK}/out.json"
            --card cpu-smoke --command smoke --out-json "${WORK}/merged.json" --out-md "${WORK}/summary.md"
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  file(READ "${WORK}/summary.md" mdtext)
  if(NOT rc EQUAL 0 OR NOT mdtext MATCHES "## Targets" OR NOT mdtext MATCHES "Steps around the expert switch")
    message(FATAL_ERROR "summarize.py failed (${rc}): ${err}")
  endif()
  message(STATUS "summarize.py ok")
endif()
